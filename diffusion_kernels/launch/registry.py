"""The scope of a launch (device, the interpreter's turns) and the
registration of launchers as ``torch.library`` ops.

The noising and loss launchers are registered as ``torch.library.triton_op``s
(``diffusion_kernels::noising``, ``::noising_backward``, ``::loss_forward`` and
``::loss_backward``) so that
``torch.compile`` sees the Triton kernels directly (through ``wrap_triton``).
Eager calls go straight to the Python bodies and launch the kernels directly:
the dispatcher and the wrap_triton higher-order op cost host time a small
batch would feel.
"""
from __future__ import annotations

import contextlib
import functools
import threading
# The registered launchers' annotations are evaluated in this module's namespace (infer_schema).
from typing import Optional  # noqa: F401

import torch

from ..dispatch import interpreter_active, triton_available


_EMPTY = ()


# Triton's interpreter swaps module-level functions of triton.language for its own while a
# kernel runs and swaps them back after, so two interpreted launches at once corrupt each other
# (errors, garbage values). Interpreted launches therefore take turns; compiled launches need no
# lock (Triton's launch path is thread-safe once a kernel is compiled).
_INTERPRETER_LOCK = threading.RLock()


def device_guard(tensor: torch.Tensor):
    """The scope of one launch: the tensor's GPU made current (Triton launches on the current device;
    a no-op in the usual case where it already is, which saves two device switches per call), or
    the interpreter's lock on CPU."""
    if tensor.is_cuda:
        index = tensor.get_device()
        return _NO_SCOPE if index == torch.cuda.current_device() else torch.cuda.device(index)
    return _INTERPRETER_LOCK if tensor.is_cpu else _NO_SCOPE


_NO_SCOPE = contextlib.nullcontext()  # reusable: it holds nothing


_op_body = threading.local()


class _TracedInterpreterLaunch:
    """An interpreted kernel as a registered op's body runs it: launched on real tensors; on the fake
    tensors of tracing (opcheck, make_fx) nothing runs, as wrap_triton does for a compiled kernel: the
    outputs were allocated by the body, and their values are not part of a trace."""

    def __init__(self, kernel):
        self.kernel = kernel

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            from torch._subclasses.fake_tensor import is_fake

            if any(isinstance(a, torch.Tensor) and is_fake(a) for a in args):
                return None
            return self.kernel[grid](*args, **kwargs)

        return launch


def launcher(kernel):
    """The kernel wrapped for torch.compile when running as a registered op's body, else as is."""
    if getattr(_op_body, "active", False):
        return _TracedInterpreterLaunch(kernel) if interpreter_active() else torch.library.wrap_triton(kernel)
    return kernel


def register_triton_op(name: str, placeholder_dtype):
    """Register ``impl`` as the triton_op ``name`` (its launches then go through wrap_triton); return impl.

    ``impl`` returns None for the outputs a call did not ask for; the op, whose
    schema returns tensors, gives 0-element placeholders of dtype
    ``placeholder_dtype(first argument)`` instead. Direct calls skip making them.
    """
    def register(impl):
        @functools.wraps(impl)
        def body(*args, **kwargs):
            _op_body.active = True
            try:
                outputs = impl(*args, **kwargs)
            finally:
                _op_body.active = False
            like = args[0]
            return tuple(o if o is not None else like.new_empty(0, dtype=placeholder_dtype(like)) for o in outputs)

        if triton_available():
            if interpreter_active():
                # Interpreted kernels are not Triton JIT functions, so wrap_triton cannot put them in a
                # traced graph: the op is opaque to tracing instead, with the body as its fake (on fake
                # tensors the body allocates the outputs and launches nothing).
                torch.library.custom_op(name, body, mutates_args=_EMPTY).register_fake(body)
            else:
                torch.library.triton_op(name, body, mutates_args=_EMPTY)
        return impl

    return register

