"""DTensor in, DTensor out: a sharded ``x0`` is noised as the block of the global tensor each rank holds.

The noise stream is a function of global position (sharding.py), so a DTensor's full tensor equals the
single-device call on the full tensors whatever its placements and mesh, with no collective for the noise.
``t`` / ``σ`` may be DTensors (replicated, or sharded along the batch) or plain tensors taken as the global,
replicated value; each rank uses the slice its block needs. The loss of sharded inputs is the single-device
loss: each rank's sum over its block, added over the mesh dims that shard the prediction.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

import torch


P = ParamSpec("P")
R = TypeVar("R")


def is_dtensor(value: object) -> bool:
    # A plain tensor (every call but a DTensor one) is answered by one type test, before any import.
    if type(value) is torch.Tensor or not isinstance(value, torch.Tensor) or not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(value, DTensor)


def _checked_placements(x: Any, name: str) -> None:
    from torch.distributed.tensor import Replicate, Shard

    for placement in x.placements:
        if type(placement) not in (Shard, Replicate):
            raise ValueError(f"{name} is a DTensor placed {placement}: only Shard(d) and Replicate() hold blocks of "
                             "the global values (a Partial holds summands, a strided shard interleaves rows); "
                             f"redistribute {name} first")


def local_block(x: Any, name: str = "x0") -> tuple[torch.Tensor, tuple[int, ...], tuple[int, ...]]:
    """(this rank's local tensor, the global shape, the local tensor's offset in it)."""
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    _checked_placements(x, name)
    shape, offset = compute_local_shape_and_global_offset(x.shape, x.device_mesh, x.placements)
    local = x.to_local()
    if tuple(local.shape) != tuple(shape):
        raise RuntimeError(f"{name}'s local tensor has shape {tuple(local.shape)} where its placements give "
                           f"{tuple(shape)}")
    return local, tuple(x.shape), tuple(offset)


def _local_rows(value: Any, global_shape: tuple[int, ...], offset: tuple[int, ...], local_shape: torch.Size,
                name: str) -> Any:
    """The slice of a per-sample value (t, σ) that a block at ``offset`` reads: a plain tensor is the global
    value; a DTensor whose own block is that slice gives its local tensor, any other is gathered (its full
    tensor: a per-sample value, a few numbers) and sliced."""
    if is_dtensor(value):
        own, full_shape, own_offset = local_block(value, name)
        rows = len(full_shape)
        if tuple(full_shape) != tuple(global_shape[:rows]):
            raise ValueError(f"{name} has global shape {tuple(full_shape)}, which is not a leading part of x0's "
                             f"global shape {tuple(global_shape)}")
        if own_offset == offset[:rows] and tuple(own.shape) == tuple(local_shape[:rows]):
            return own
        value = value.full_tensor()
    if not isinstance(value, torch.Tensor) or value.ndim == 0:
        return value
    rows = value.ndim
    if tuple(value.shape) != tuple(global_shape[:rows]):
        raise ValueError(f"{name} of shape {tuple(value.shape)} with a DTensor x0 must be the global value: a "
                         f"leading part of x0's global shape {tuple(global_shape)}")
    return value[tuple(slice(o, o + n) for o, n in zip(offset[:rows], local_shape[:rows]))]


def _wrap(value: Any, like: Any) -> Any:
    from torch.distributed.tensor import DTensor

    if isinstance(value, tuple):
        return tuple(_wrap(v, like) for v in value)
    if isinstance(value, torch.Tensor) and value.shape == like.to_local().shape:
        return DTensor.from_local(value, like.device_mesh, like.placements, run_check=False, shape=like.shape,
                                  stride=like.stride())
    return value


def follow_dtensor(per_sample: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A noising entry point that also takes a DTensor ``x0`` (its first argument): the call runs on the local
    block at its global position (global_shape/global_offset), the per-sample argument ``per_sample`` (t or
    sigma) sliced to the block, a DTensor noise taken locally, and each tensor result comes back as a DTensor
    placed as ``x0``. The stream defaults to 0, so replicas of a block draw the same values."""

    def decorate(entry: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(entry)
        first = next(iter(signature.parameters))

        @functools.wraps(entry)
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
            # A plain tensor goes straight through: no binding, a few hundred nanoseconds of host time (and
            # nothing a compiled graph would have to trace).
            x = args[0] if args else kwargs.get(first)
            if type(x) is torch.Tensor or not is_dtensor(x) or torch.compiler.is_compiling():
                return entry(*args, **kwargs)
            bound = signature.bind(*args, **kwargs)
            given = bound.arguments
            if given.get("global_shape") is not None or given.get("global_offset") is not None:
                raise ValueError("a DTensor carries its own global shape and offset: leave global_shape and "
                                 "global_offset out")
            local, global_shape, offset = local_block(x, first)
            given[first] = local
            given[per_sample] = _local_rows(given[per_sample], global_shape, offset, local.shape, per_sample)
            if is_dtensor(given.get("noise")):
                given["noise"] = local_block(given["noise"], "noise")[0]
            # The global position also makes the default stream 0: replicas of a block draw the same values.
            given["global_shape"], given["global_offset"] = global_shape, offset
            return cast(R, _wrap(entry(*bound.args, **bound.kwargs), x))

        return wrapped

    return decorate


class _SumOverShards(torch.autograd.Function):
    """Σ over a process group of each rank's part of one loss: the value every rank then holds, whose
    gradient to each rank's part is 1 (the rank's own term), not the group's size as a differentiable
    all-reduce would give when every rank calls backward."""

    @staticmethod
    def forward(ctx: Any, part: torch.Tensor, groups: tuple[Any, ...]) -> torch.Tensor:
        total = part.clone()
        for group in groups:
            torch.distributed.all_reduce(total, group=group)
        return total

    @staticmethod
    def backward(ctx: Any, upstream: torch.Tensor) -> tuple[torch.Tensor, None]:
        return upstream, None


def sharded_loss(loss: Callable[..., torch.Tensor], prediction: Any, noised: Any, x0: Any, reduction: str,
                 **options: Any) -> torch.Tensor:
    """``diffusion_loss`` of a DTensor prediction: the single-device loss, the same plain tensor on every rank.

    Each rank sums its block (``reduction="sum"``); the sums are added over the mesh dims that shard the
    prediction (its replicas hold the same block and are counted once); "mean" divides by the global count
    of elements, which is the single-device mean over samples of each sample's mean squared error."""
    from torch.distributed.tensor import Shard

    if reduction == "none":
        raise ValueError("reduction='none' with a DTensor prediction: a sample's loss spans ranks; use 'mean' or "
                         "'sum' (the single-device value on every rank)")
    local, _, _ = local_block(prediction, "prediction")
    if x0 is not None and is_dtensor(x0):
        x0 = local_block(x0, "x0")[0]
    if is_dtensor(options.get("weighting")):
        raise TypeError("a weighting tensor with a DTensor prediction must be a plain tensor shaped like this "
                        "rank's t (or σ)")
    part = loss(local, noised, x0=x0, reduction="sum", **options)
    mesh = prediction.device_mesh
    groups = tuple(mesh.get_group(dim) for dim, placement in enumerate(prediction.placements)
                   if isinstance(placement, Shard))
    total = _SumOverShards.apply(part, groups) if groups else part
    return total / prediction.numel() if reduction == "mean" else total
