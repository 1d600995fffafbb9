"""Moving a call's small host tensors (t, σ, tables, seeds) to the GPU without a host sync.

``tensor.to("cuda")`` from ordinary (pageable) host memory blocks the host until the GPU has drained
its queue, so a training step could no longer run ahead of the GPU. A non-blocking copy from pinned
memory does not. The pinned buffer is a fresh snapshot of the values (PyTorch's caching host
allocator keeps it alive until the copy has run), so the caller may change its tensor right after
the call without changing what the kernel reads.
"""
from __future__ import annotations

import torch


def _same_device(tensor: torch.Tensor, device: torch.device) -> bool:
    return tensor.device.type == device.type and (device.index is None or tensor.device.index == device.index)


def to_device(tensor: torch.Tensor, device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``tensor`` on ``device`` (in ``dtype``), never stalling the host, except for a host tensor that
    requires grad (below)."""
    if type(device) is not torch.device:
        device = torch.device(device)
    if tensor.device == device or _same_device(tensor, device):
        return tensor if dtype is None else tensor.to(dtype)
    if dtype is not None and tensor.device.type == "cpu":
        tensor = tensor.to(dtype)  # the cast on the host, before the copy: no second pass on the device
    if (tensor.device.type == "cpu" and device.type == "cuda" and not torch.compiler.is_compiling()
            and not tensor.requires_grad):
        return tensor.pin_memory().to(device, non_blocking=True)
    if tensor.requires_grad:
        # A learned table or σ kept on the host: autograd must follow the copy, which pinning does not
        # promise, so this (rare) case keeps the ordinary copy.
        return tensor.to(device=device, dtype=dtype)
    # Under torch.compile Inductor stages its own copies; other pairs of devices have no pinned memory.
    return tensor.to(device=device, dtype=dtype, non_blocking=True)
