"""What a training objective asks of the loss: the target's coefficients per row and the per-sample weights.

The target is ce·ε + cx·x0 per row (row = entry of the noising call's t or σ):

- ``"eps"``: ε (1, 0), for any noising form;
- ``"x0"``: x0 (0, 1), for any form (EDM's and the flow scripts' preconditioned outputs);
- ``"v"``: the form's v-target: sqrt(ᾱ)·ε − sqrt(1 − ᾱ)·x0 for DDPM, ε − x0 for flow matching;
- ``"flow"``: the flow-matching velocity ε − x0, for ``flow_match_sample`` handles.

Weightings, one number per row (the per-sample loss is the row's mean squared error times it):

- ``"min_snr"`` (DDPM): Min-SNR-γ as diffusers' ``train_text_to_image.py`` applies it, with
  SNR = ᾱ/(1 − ᾱ): min(SNR, γ)/SNR for ε, min(SNR, γ)/(SNR + 1) for v, min(SNR, γ) for x0. Where
  SNR = 0 (a zero-terminal-SNR schedule's last step) the ε weight is 1, the formula's value for every
  SNR below γ and its limit at 0; diffusers' scripts compute 0/0 there, a NaN in the batch's loss.
- ``"sigma_sqrt"``, ``"cosmap"`` (flow matching): ``compute_loss_weighting_for_sd3``: σ⁻², and
  2/(π·(1 − 2σ + 2σ²)).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from . import transfer
from .checks import clamped

TARGETS = ("eps", "v", "x0", "flow")
WEIGHTINGS = ("min_snr", "sigma_sqrt", "cosmap")
REDUCTIONS = ("mean", "sum", "none")


class Objective(NamedTuple):
    """A loss's per-row tables on the prediction's device (float32, one entry per row)."""
    has_eps: bool
    eps_scale: Optional[torch.Tensor]  # ce; None: 1
    x0_scale: Optional[torch.Tensor]  # cx; None: the target has no x0 term
    weights: Optional[torch.Tensor]  # None: 1


# The plain ε target, unweighted: no table.
EPS = Objective(True, None, None, None)


def _gathered(tables, form, device) -> tuple[torch.Tensor, torch.Tensor]:
    """A pair of the form's tables at each row's index, float64 (rows,), on ``device``."""
    first, second = tables(device)
    index = transfer.to_device(form.index, device).reshape(-1)
    if index.numel() == 0:
        index = index.new_zeros(1)
    # The rows the noising kernel read: unchecked indices are clamped there (checks.clamped).
    index = clamped(index, first.numel())
    return first.detach().double()[index], second.detach().double()[index]


def _weights(weighting: str, kind: str, target: str, a: torch.Tensor, b: torch.Tensor, gamma: float):
    if weighting == "min_snr":
        if kind != "ddpm":
            raise ValueError(f"weighting='min_snr' needs a DDPM noising (q_sample), not a {kind or 'forward-step'} one")
        snr = (a / b) ** 2
        clipped = torch.clamp(snr, max=gamma)
        if target == "eps":
            return torch.where(snr == 0, torch.ones_like(snr), clipped / snr)
        return clipped / (snr + 1) if target == "v" else clipped
    if kind != "flow":
        raise ValueError(f"weighting={weighting!r} is a flow-matching weighting (flow_match_sample), "
                         f"not for a {kind or 'forward-step'} noising")
    sigma = b
    if weighting == "sigma_sqrt":
        return sigma ** -2.0
    return 2.0 / (math.pi * (1.0 - 2.0 * sigma + 2.0 * sigma ** 2))


def objective(handle, target: str, weighting, snr_gamma: float, device) -> Objective:
    """The tables of ``target`` and a named ``weighting`` (or None) for the noising behind ``handle``."""
    if target == "eps" and weighting is None:
        return EPS  # every form has ε, and no table is read
    form = handle.form
    kind = form.objective
    if target == "flow" and kind != "flow":
        raise ValueError(f"target='flow' is the flow-matching velocity ε − x0: it needs a flow_match_sample handle, "
                         f"not a {kind or 'forward-step'} one")
    if target == "v" and form.velocity_tables is None:
        raise ValueError(f"target='v' needs a noising with a v-target (q_sample or flow_match_sample), "
                         f"not a {kind or 'forward-step'} one")
    if (target == "v" or weighting is not None) and torch.is_grad_enabled() and any(
            isinstance(t, torch.Tensor) and t.requires_grad for t in form.inputs):
        # The v coefficients and the weights are read from the tables as constants: a gradient to a
        # learned schedule or σ through them would be silently missing.
        raise NotImplementedError(f"target={target!r} with weighting={weighting!r} reads the noising's schedule "
                                  "(or σ), which requires grad here: its gradient through the loss is not "
                                  "supported")
    rows = max(handle.rows_shape.numel(), 1)
    eps_scale = x0_scale = None
    if target == "v":
        c, d = _gathered(form.velocity_tables, form, device)
        eps_scale, x0_scale = d.float(), c.float()
    elif target in ("x0", "flow"):
        x0_scale = torch.full((rows,), 1.0 if target == "x0" else -1.0, dtype=torch.float32, device=device)
    weights = None
    if weighting is not None:
        a, b = _gathered(form.tables, form, device)
        weights = _weights(weighting, kind, target, a, b, snr_gamma).float()
    return Objective(target != "x0", eps_scale, x0_scale, weights)
