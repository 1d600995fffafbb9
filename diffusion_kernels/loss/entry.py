"""The training losses against a noising call's ε kept as its seed: ``diffusion_loss`` (ε, v, x0 and flow
targets, weighted per sample) and ``noise_mse`` (its ε, unweighted case). ε and the target are never stored."""
from __future__ import annotations


import torch

from .. import checks, cpu_noise, dispatch, dtensors, objectives, transfer
from ..noising.handle import NoiseHandle


def _checked_handle(prediction: torch.Tensor, noised: object) -> NoiseHandle:
    if not isinstance(noised, NoiseHandle):
        raise TypeError("noised must be the NoiseHandle from q_sample(..., return_noise='seed'), "
                        f"got {type(noised).__name__}")
    if prediction.shape != noised.shape:
        raise ValueError(f"prediction has shape {tuple(prediction.shape)} but the noise had shape "
                         f"{tuple(noised.shape)}")
    if prediction.device != noised.device:
        raise ValueError(f"prediction is on {prediction.device} but the noise was drawn for {noised.device}")
    return noised


def _row_weights(weighting: torch.Tensor, handle: NoiseHandle, device: torch.device) -> torch.Tensor:
    """A weighting tensor as one weight per row, (rows,): shape ``t``'s (or σ's), that shape with trailing
    size-1 dims (diffusers' (B, 1, 1, 1)), or one value for every row."""
    checks.check_plain(weighting, "weighting")
    if not weighting.is_floating_point():
        raise TypeError(f"a weighting tensor must be floating point, got {weighting.dtype}")
    rows_shape = tuple(handle.rows_shape)
    shape = tuple(weighting.shape)
    core = shape
    while len(core) > len(rows_shape) and core[-1] == 1:
        core = core[:-1]
    if weighting.numel() != 1 and core != rows_shape:
        raise ValueError(f"weighting of shape {shape} does not give one weight per sample: the noising's t (or "
                         f"sigma) has shape {rows_shape}, so it must have that shape (trailing 1s allowed) or one "
                         "element")
    weights = transfer.to_device(weighting, device)
    rows = max(handle.rows_shape.numel(), 1)
    return weights.reshape(-1).expand(rows) if weighting.numel() == 1 else weights.reshape(rows)


@cpu_noise.fork_safe
def diffusion_loss(prediction: torch.Tensor, noised: NoiseHandle, *, target: str = "eps",
                   x0: torch.Tensor | None = None, weighting: str | torch.Tensor | None = None,
                   snr_gamma: float = 5.0,
                   reduction: str = "mean", backend: str = "auto") -> torch.Tensor:
    """The training loss of ``prediction`` against the target behind ``noised``, ε regenerated, never stored.

    Args:
        prediction: the model's output, shaped like the noised batch.
        noised: the :class:`NoiseHandle` that ``q_sample``, ``flow_match_sample`` or ``edm_sample``
            returned with ``return_noise="seed"``.
        target: ``"eps"``, ``"v"`` (sqrt(ᾱ)·ε − sqrt(1 − ᾱ)·x0; ε − x0 for flow matching), ``"x0"``,
            or ``"flow"`` (ε − x0, flow matching). See :mod:`diffusion_kernels.objectives`.
        x0: the clean batch that was noised; read only by the targets that have it (v, x0, flow).
        weighting: None, ``"min_snr"`` (DDPM, with ``snr_gamma``), ``"sigma_sqrt"`` or ``"cosmap"``
            (flow matching), or a tensor of per-sample weights (shape t's or σ's, trailing 1s allowed;
            it may require grad).
        reduction: ``"mean"``: the mean over samples of weight × the sample's mean squared error (the
            plain MSE when unweighted); ``"sum"``: Σ weight × squared error; ``"none"``: the per-sample
            losses, shaped like t (or σ).
        backend: as in :func:`q_sample`.

    Forward and backward are each one fused pass (a second backward pass only for a gradient to
    x0); no atomics, float32 accumulation, the same result on every run. The loss is float32
    (float64 for a float64 prediction, which takes the reference).

    A DTensor ``prediction`` (with the handle of the DTensor call that noised it) gives the loss a single
    device computes on the full tensors, as a plain tensor holding the same value on every rank, and each
    rank's gradient is its block of the single-device gradient ("mean" and "sum"; see
    :func:`diffusion_kernels.dtensors.sharded_loss`).
    """
    if reduction not in objectives.REDUCTIONS:
        raise ValueError(f"reduction must be one of {objectives.REDUCTIONS}, got {reduction!r}")
    if dtensors.is_dtensor(prediction):
        return dtensors.sharded_loss(diffusion_loss, prediction, noised, x0, reduction, target=target,
                                     weighting=weighting, snr_gamma=snr_gamma, backend=backend)
    prediction = checks.check_x0(prediction, "prediction")
    handle = _checked_handle(prediction, noised)
    if handle.form is None:
        raise ValueError("this NoiseHandle does not say how its batch was noised; make it with "
                         "return_noise='seed'")
    if target not in objectives.TARGETS:
        raise ValueError(f"target must be one of {objectives.TARGETS}, got {target!r}")
    named = None
    if isinstance(weighting, str):
        if weighting not in objectives.WEIGHTINGS:
            raise ValueError(f"weighting must be None, one of {objectives.WEIGHTINGS} or a tensor, got {weighting!r}")
        named = weighting
    elif weighting is not None and not isinstance(weighting, torch.Tensor):
        raise TypeError(f"weighting must be None, a name or a tensor, got {type(weighting).__name__}")
    snr_gamma = checks.check_real(snr_gamma, "snr_gamma")
    if not snr_gamma > 0:
        raise ValueError(f"snr_gamma must be positive, got {snr_gamma}")
    needs_x0 = target != "eps"
    if needs_x0:
        if x0 is None:
            raise ValueError(f"target={target!r} reads x0: pass the clean batch that was noised as x0=")
        x0 = checks.check_x0(x0, "x0")
        if x0.shape != prediction.shape or x0.device != prediction.device:
            raise ValueError(f"x0 of shape {tuple(x0.shape)} on {x0.device} does not match the prediction's "
                             f"{tuple(prediction.shape)} on {prediction.device}")
    else:
        x0 = None

    device = prediction.device
    spec = objectives.objective(handle, target, named, snr_gamma, device)
    weights = spec.weights if isinstance(weighting, str) or weighting is None else _row_weights(weighting, handle,
                                                                                                device)
    if handle.rows_shape.numel() == 0:
        # No sample: no loss to weigh (and the kernels have nothing to read).
        empty = prediction.new_zeros(handle.rows_shape, dtype=torch.promote_types(prediction.dtype, torch.float32))
        return empty if reduction == "none" else empty.sum() + 0.0 * prediction.sum()
    implementation = dispatch.implementation("loss", backend, prediction,
                                             *(t for t in (x0, weights) if t is not None))
    return implementation.loss(prediction, handle, spec, x0, weights, reduction)


def noise_mse(prediction: torch.Tensor, noised: NoiseHandle, *, reduction: str = "mean",
              backend: str = "auto") -> torch.Tensor:
    """MSE between ``prediction`` and the ε behind ``noised``, without ever storing ε: the ε-target,
    unweighted case of :func:`diffusion_loss`.

    Equals ``F.mse_loss(prediction, ε, reduction=reduction)`` ("mean" or "sum").
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return diffusion_loss(prediction, noised, reduction=reduction, backend=backend)
