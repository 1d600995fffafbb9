"""The one place that picks the backend of a call, decided per call from the tensors at hand.

Every op folder (noising, loss, sampling, trajectory) holds one module per backend with the same
signature: ``triton`` (the host launcher's side of the Triton kernels), ``cpu`` (the compiled CPU loop)
and ``reference`` (plain PyTorch). :func:`implementation` returns the one that runs a call; nothing
else in the package tests a backend's name.

Triton is imported on first use, never at package import, so the reference
path works on machines without Triton and ``TRITON_INTERPRET=1`` can still be
set by a program before its first call.
"""
from __future__ import annotations

import functools
import importlib
from types import ModuleType

import torch

BACKENDS = ("auto", "triton", "cpu", "reference")
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# Fixed for the life of a process, so computed once (_FIXED) and, under torch.compile, evaluated while
# tracing and kept as constants, instead of traced into the imports (which Dynamo cannot follow).
_FIXED: dict = {}


@torch.compiler.assume_constant_result
def triton_available() -> bool:
    if "triton" not in _FIXED:
        try:
            importlib.import_module("triton")
            _FIXED["triton"] = True
        except ImportError:
            _FIXED["triton"] = False
    return _FIXED["triton"]


@torch.compiler.assume_constant_result
def interpreter_active() -> bool:
    """True when the kernels run under Triton's CPU interpreter (TRITON_INTERPRET=1).

    Fixed once the kernels are imported (Triton decides when it decorates them), so computed once.
    """
    if "interpreter" not in _FIXED:
        _FIXED["interpreter"] = _interpreted()
    return _FIXED["interpreter"]


def _interpreted() -> bool:
    if not triton_available():
        return False
    from triton.runtime.interpreter import InterpretedFunction

    from .kernels import noising  # Triton reads TRITON_INTERPRET as it decorates the kernels, here

    return isinstance(noising.noising_fwd_kernel, InterpretedFunction)


def transform_in_use(tensors) -> str | None:
    """The name of a transform the kernels cannot follow, if one is applied to any of ``tensors``:
    forward-mode AD (a dual tensor) or a torch.func transform (grad, jvp, vjp, vmap)."""
    if torch.autograd.forward_ad._current_level < 0 and not torch._C._functorch.get_interpreter_stack():
        return None  # no transform is active: no tensor can carry one (answered first, a call's usual case)
    live = [t for t in tensors if isinstance(t, torch.Tensor)]
    wrapped = torch._C._functorch.is_functorch_wrapped_tensor
    if any(wrapped(t) for t in live):
        return "a torch.func transform (grad, jacrev, jvp, vmap, ...)"
    if torch.autograd.forward_ad._current_level >= 0 and any(
            torch.autograd.forward_ad.unpack_dual(t).tangent is not None for t in live):
        return "forward-mode AD (torch.autograd.forward_ad)"
    return None


def under_vmap() -> bool:
    """Whether the call runs inside torch.vmap (at any level of nested torch.func transforms)."""
    if torch.compiler.is_compiling():
        return False
    stack = torch._C._functorch.get_interpreter_stack()
    if not stack:
        return False
    return any(level.key() == torch._C._functorch.TransformType.Vmap for level in stack)


def cpu_available() -> bool:
    """Whether the compiled CPU loop (numba, the ``[cpu]`` extra) is installed; fixed for the process."""
    if "cpu" not in _FIXED:
        from . import cpu_noise

        _FIXED["cpu"] = cpu_noise.available()
    return _FIXED["cpu"]


def select(backend: str, x: torch.Tensor, *others) -> str:
    """'triton', 'cpu' or 'reference' for a call on ``x`` (and the call's other tensors ``others``);
    raises for a backend that cannot run it.

    'cpu' is the reference's formulas with the noise drawn by the compiled CPU loop (cpu_noise, the
    ``[cpu]`` extra): what ``"auto"`` takes for CPU tensors outside Triton's interpreter.

    Under forward-mode AD or a torch.func transform ``"auto"`` takes the reference, whose plain
    PyTorch operations every transform follows (the same noise stream; the kernels' Function has
    no forward-mode or batching rule); ``"triton"`` refuses, naming the transform.

    Outside a transform and torch.compile the answer depends on the backend asked for, x's device and dtype
    and the installed extras only: it is worked out once for them.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not torch.compiler.is_compiling() and transform_in_use((x, *others)) is None:
        key = (backend, x.is_cpu, x.is_cuda, x.dtype, cpu_available())
        picked = _PICKED.get(key)
        if picked is None:
            picked = _PICKED[key] = _select(backend, x, others)
        return picked
    return _select(backend, x, others)


_PICKED: dict = {}


def _select(backend: str, x: torch.Tensor, others: tuple) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return "reference"
    on_cpu, on_cuda = x.is_cpu, x.is_cuda
    if backend == "cpu":
        if not on_cpu:
            raise RuntimeError(f"backend='cpu' runs on CPU tensors, got device {x.device}")
        if not cpu_available():
            from .install import extra_line

            raise RuntimeError(f"backend='cpu' needs numba: {extra_line('cpu')}")
    compiling = torch.compiler.is_compiling()
    transform = None if compiling else transform_in_use((x, *others))
    if transform is not None:
        if backend != "auto":
            raise RuntimeError(f"backend={backend!r} cannot run under {transform}: its compiled noise has no rule "
                               "for it; use backend='auto' or 'reference'")
        return "reference"
    if backend == "cpu":
        return "cpu"
    kernel_ok = x.dtype in KERNEL_DTYPES
    if backend == "auto":
        if not on_cuda and compiling:
            # A compiled graph on CPU runs the reference: neither the interpreter nor numba can be traced.
            return "reference"
        if on_cpu and not (kernel_ok and triton_available() and interpreter_active()):
            return "cpu" if cpu_available() else "reference"
        return "triton" if kernel_ok and (on_cuda or on_cpu) and triton_available() else "reference"
    if not triton_available():
        raise RuntimeError("backend='triton' needs the triton package, which is not installed")
    if not kernel_ok:
        raise TypeError(
            f"backend='triton' takes float32, float16 or bfloat16 tensors, got {x.dtype}; "
            "float64 runs on backend='reference' (or 'auto')"
        )
    if x.device.type == "cpu" and not interpreter_active():
        raise RuntimeError(
            "backend='triton' on CPU tensors needs Triton's interpreter: set TRITON_INTERPRET=1 "
            "before the first call, or use backend='auto'"
        )
    if x.device.type not in ("cpu", "cuda"):
        raise RuntimeError(f"backend='triton' runs on CUDA tensors, got device {x.device}")
    return "triton"



def where(backend: str, device: torch.device) -> str:
    """What runs a backend's code on ``device``, for a report: the Triton interpreter for kernels on a CPU."""
    return " (Triton interpreter)" if backend == "triton" and device.type == "cpu" else ""


@functools.lru_cache(maxsize=None)
def _backends(op: str) -> dict[str, ModuleType]:
    """The backend modules of ``op``, by backend name (imported on first use: they import torch ops and
    Triton launchers a CPU-only program may never need)."""
    if op == "noising":
        from .noising import cpu, reference, triton
    elif op == "loss":
        from .loss import cpu, reference, triton  # type: ignore[no-redef]
    elif op == "sampling":
        from .sampling import cpu, reference, triton  # type: ignore[no-redef]
    elif op == "trajectory":
        from .trajectory import cpu, reference, triton  # type: ignore[no-redef]
    else:
        raise ValueError(f"no op named {op!r}")
    return {"triton": triton, "cpu": cpu, "reference": reference}


def implementation(op: str, backend: str, x: torch.Tensor, *others) -> ModuleType:
    """The module of ``op`` ("noising", "loss", "sampling" or "trajectory") that runs a call on ``x``
    (and the call's other tensors ``others``) with ``backend``: ``diffusion_kernels.<op>.triton``,
    ``.cpu`` or ``.reference``, which take the same arguments."""
    name = select(backend, x, *others)
    module = _MODULES.get((op, name))
    if module is None:
        module = _MODULES[(op, name)] = _backends(op)[name]
    return module


_MODULES: dict = {}
