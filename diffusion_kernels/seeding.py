"""Where a call's 64-bit Philox seed comes from.

An explicit ``seed`` is used as is. Otherwise one 64-bit value is drawn from
``generator`` or, when none is given, from torch's default CPU generator, so
``torch.manual_seed`` makes a run reproducible and consecutive calls (which
draw consecutive values) get independent streams.
"""
from __future__ import annotations

import operator
from typing import SupportsIndex, TypeAlias

import torch

SEED_BOUND = 2**64


def check_seed(seed: SupportsIndex, name: str = "seed", bound: int = SEED_BOUND) -> int:
    """``seed`` as an int in [0, bound); the errors name the argument."""
    if isinstance(seed, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        value = operator.index(seed)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(seed).__name__}") from None
    if not 0 <= value < bound:
        raise ValueError(f"{name} must lie in [0, 2**{bound.bit_length() - 1}), got {value}")
    return value


def draw_seed(generator: torch.Generator | None = None) -> int:
    """One uniformly random 64-bit seed from ``generator`` (default: torch's CPU generator)."""
    device = generator.device if generator is not None else "cpu"
    value = torch.randint(-(2**63), 2**63 - 1, (), generator=generator, device=device, dtype=torch.int64)
    return int(value) % SEED_BOUND


def draw_seed_tensor(generator: torch.Generator | None, device: torch.device | str) -> torch.Tensor:
    """The draw of :func:`draw_seed` kept as a 1-element int64 tensor on ``device``: no host read.

    It is drawn where the generator lives (torch's CPU generator by default)
    and holds the same 64 bits the int would.
    """
    where = generator.device if generator is not None else "cpu"
    drawn = torch.randint(-(2**63), 2**63 - 1, (1,), generator=generator, device=where, dtype=torch.int64)
    from .transfer import to_device

    return to_device(drawn, device)


def resolve_seed(seed: SupportsIndex | None = None, generator: torch.Generator | None = None) -> int:
    if seed is not None:
        if generator is not None:
            raise ValueError("pass either seed or generator, not both")
        return check_seed(seed)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return draw_seed(generator)


def split_seed(seed: int) -> tuple[int, int]:
    """The seed's low and high 32-bit halves as signed int32 values.

    Triton types an int argument by its value (i32, i64 or u64); passing both
    halves in the int32 range keeps one kernel signature for every seed.
    """
    return as_int32(seed & 0xFFFFFFFF), as_int32(seed >> 32)


def as_int32(word: int) -> int:
    """A 32-bit word as the signed int32 with the same bits (Triton types int arguments by value)."""
    return word - 2**32 if word >= 2**31 else word


def default_stream() -> int:
    """The Philox stream word of a call that names none: the process's rank in an
    initialised ``torch.distributed`` group, else 0.

    Ranks of one job usually share a seed (``torch.manual_seed(S)`` on every
    rank); putting the rank in the counter gives each rank its own stream of
    that seed, so no two ranks ever draw the same noise.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return 0


def check_stream(stream: SupportsIndex | None) -> int:
    return check_seed(stream, "stream", 2**32) if stream is not None else default_stream()


class DeviceSeed:
    """A 64-bit seed kept in device memory and advanced by one on every call that uses it.

    The kernels read it at run time instead of taking it as a launch
    argument, so a q_sample captured in a CUDA graph draws fresh noise on each
    replay: call k of a ``DeviceSeed(S)`` uses seed S + k (mod 2**64).
    """

    def __init__(self, seed: int | None = None, device: torch.device | str = "cuda",
                 generator: torch.Generator | None = None) -> None:
        value = resolve_seed(seed, generator)
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"DeviceSeed(device={str(device)!r}) keeps the seed in GPU memory, but torch sees no "
                               "CUDA device here; use an int seed, or DeviceSeed(..., device='cpu')")
        signed = value - SEED_BOUND if value >= 2**63 else value
        self.tensor = torch.tensor([signed], dtype=torch.int64, device=device)

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    def take(self) -> torch.Tensor:
        """The seed for this call (a 1-element device tensor), advancing the stored one.

        Both steps are device ops, recorded by graph capture like any other.
        """
        current = self.tensor.clone()
        self.tensor.add_(1)
        return current

    def peek(self) -> int:
        """The seed the next call will use, as a Python int (a host sync)."""
        return int(self.tensor.item()) % SEED_BOUND

    def __repr__(self) -> str:
        return f"DeviceSeed(next={self.peek()}, device={self.device})"


# A seed argument: an int in [0, 2**64), a DeviceSeed, or None (drawn from the generator).
Seed: TypeAlias = "int | DeviceSeed | None"
