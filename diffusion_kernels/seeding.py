"""Where a call's 64-bit Philox seed comes from.

An explicit ``seed`` is used as is. Otherwise one 64-bit value is drawn from
``generator`` or, when none is given, from torch's default CPU generator, so
``torch.manual_seed`` makes a run reproducible and consecutive calls (which
draw consecutive values) get independent streams.
"""
from __future__ import annotations

import functools
import operator
import threading
from typing import Any, SupportsIndex, TypeAlias, cast

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


_DRAWS = threading.local()  # each thread's one-element buffer for a host draw


def draw_seed(generator: torch.Generator | None = None) -> int:
    """One uniformly random 64-bit seed from ``generator`` (default: torch's CPU generator).

    torch.randint(low, high, ...) is an empty tensor's random_(low, high): on the host the draw goes into a
    buffer of the thread's instead, the same value without an allocation."""
    if generator is None or generator.device.type == "cpu":
        buffer = getattr(_DRAWS, "buffer", None)
        if buffer is None:
            buffer = _DRAWS.buffer = torch.empty((), dtype=torch.int64)
        if generator is None:  # the default generator's draw, its keyword left out (parsed per call)
            return cast(int, buffer.random_(-(2**63), 2**63 - 1).item()) % SEED_BOUND
        return cast(int, buffer.random_(-(2**63), 2**63 - 1, generator=generator).item()) % SEED_BOUND
    value = torch.randint(-(2**63), 2**63 - 1, (), generator=generator, device=generator.device, dtype=torch.int64)
    return cast(int, value.item()) % SEED_BOUND


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


def seed_parts(seed: int | torch.Tensor) -> tuple[torch.Tensor | None, int, int]:
    """(seed tensor or None, low half, high half) for an int seed or a 1-element int64 device tensor."""
    if isinstance(seed, torch.Tensor):
        return seed, 0, 0
    return (None, *split_seed(seed))


def seed_args(seed_tensor: torch.Tensor | None, seed_lo: int, seed_hi: int,
              placeholder: torch.Tensor) -> tuple[int, int, torch.Tensor, bool]:
    """A kernel's seed arguments (seed_lo, seed_hi, seed_ptr, SEED_FROM_PTR): the halves, or the tensor the
    kernel reads (kernels/philox_normal.load_seed), ``placeholder`` standing in for the pointer it ignores."""
    if seed_tensor is not None:
        return 0, 0, seed_tensor, True
    return seed_lo, seed_hi, placeholder, False


def default_stream() -> int:
    """The Philox stream word of a call that names none: the process's rank in an
    initialised ``torch.distributed`` group, else 0.

    Ranks of one job usually share a seed (``torch.manual_seed(S)`` on every
    rank); putting the rank in the counter gives each rank its own stream of
    that seed, so no two ranks ever draw the same noise.
    """
    dist = torch.distributed
    if _distributed() and dist.is_initialized():
        return dist.get_rank()
    return 0


@functools.cache
def _distributed() -> bool:
    """Whether this build of torch has torch.distributed (fixed for the process)."""
    return torch.distributed.is_available()


def check_stream(stream: SupportsIndex | None, sharded: bool = False) -> int:
    """The stream word: as given; by default the rank of a process group, except for a shard of a global
    tensor (``sharded``), where positions, not ranks, separate the processes' noise (0)."""
    if stream is not None:
        return check_seed(stream, "stream", 2**32)
    return 0 if sharded else default_stream()


def call_seed(seed: Any, generator: torch.Generator | None, device: torch.device | str,
              on_device: bool) -> int | torch.Tensor:
    """A call's seed in the form its backend reads: an int, or a 1-element int64 tensor read at run time
    (a DeviceSeed, or any drawn seed under torch.compile) where the backend reads seeds on the device
    (``on_device``); on the host a DeviceSeed is read back as an int."""
    if seed is None and generator is None and not torch.compiler.is_compiling():
        return draw_seed()  # the usual call: one draw from torch's CPU generator
    if isinstance(seed, DeviceSeed):
        if generator is not None:
            raise ValueError("pass either seed or generator, not both")
        if seed.device != device:
            raise ValueError(f"DeviceSeed lives on {seed.device} but x0 is on {device}")
        return seed.take() if on_device else int(seed.take().item()) % SEED_BOUND
    if seed is None and torch.compiler.is_compiling():
        # No host sync inside a compiled graph: the seed stays a tensor (the kernel reads it on the device).
        return draw_seed_tensor(generator, device if on_device else "cpu")
    if seed is None and on_device and isinstance(generator, torch.Generator) and generator.device.type == "cuda":
        # A GPU generator's draw stays where it is, for the kernel to read: an int would stall the host.
        return draw_seed_tensor(generator, device)
    return resolve_seed(seed, generator)


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
