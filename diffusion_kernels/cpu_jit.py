"""How the compiled CPU loops are compiled (numba; imported only where the [cpu] extra is installed): the
threading layer, the on-disk cache and its folder, the jit decorator, and the intrinsics that read a
tensor's address as an array's. The loops themselves: cpu_loops.py (the noise stream, noising),
cpu_loss_loops.py (the loss)."""
import os
import sys
import tempfile

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

u32 = np.uint32
f32 = np.float32
one, two, three = np.uint64(1), np.uint64(2), np.uint64(3)
MASK32 = np.uint64(0xFFFFFFFF)
SHIFT32 = np.uint64(32)

# numba's default threading layer takes GNU OpenMP where it finds it, and libgomp does not survive fork():
# a DataLoader worker forked after a threaded call aborts ("fork() called from a process already using GNU
# OpenMP") or hangs. "forksafe" takes TBB, a non-GNU OpenMP or numba's own workqueue, each safe across fork.
# A layer the user names in NUMBA_THREADING_LAYER is theirs to choose.
# numba reads its settings from the environment again before it compiles, so the choice is made there.
if "NUMBA_THREADING_LAYER" not in os.environ:
    os.environ["NUMBA_THREADING_LAYER"] = numba.config.THREADING_LAYER = "forksafe"


def _probe():
    return 0


def _cache_setting():
    """Whether the loops are cached on disk, and where (None: where numba looks by itself).

    numba caches beside this file, else in the user's cache directory; where neither can be written (a
    read-only install in a container with a read-only home) it refuses to decorate a cached function. The
    loops are then cached in a directory of the temporary folder, else not at all: slower to start, never
    a crash. numba picks a function's cache location when it decorates it, so the probe decorates one.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return True, None
    try:
        numba.njit(cache=True)(_probe)
        return True, None
    except RuntimeError:
        pass
    user = os.getuid() if hasattr(os, "getuid") else 0
    folder = os.path.join(tempfile.gettempdir(), f"diffusion-kernels-numba-{user}")
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        print("diffusion-kernels: numba can write no cache for the CPU loops (the package's folder, the user's "
              "cache and the temporary folder are read-only), so they compile on every process's first call; "
              "set NUMBA_CACHE_DIR to a writable folder to keep them", file=sys.stderr)
        return False, None
    print(f"diffusion-kernels: the package's folder and the user's cache are read-only, so the CPU loops are "
          f"cached in {folder} (set NUMBA_CACHE_DIR to choose)", file=sys.stderr)
    return True, folder


CACHE, _CACHE_DIR = _cache_setting()


def jit(**options):
    """numba's njit as every loop takes it: cached on disk where it can be, IEEE arithmetic. The fallback
    cache folder applies to the loops alone: numba reads CACHE_DIR when it decorates a function, so it is
    set for the decoration and given back after."""
    def decorate(function):
        user = numba.config.CACHE_DIR
        if _CACHE_DIR is not None:
            numba.config.CACHE_DIR = _CACHE_DIR
        try:
            return numba.njit(cache=CACHE, fastmath=False, error_model="numpy", **options)(function)
        finally:
            numba.config.CACHE_DIR = user

    return decorate


def _pointer_to(item):
    """An intrinsic that reads an address (an int, a tensor's data_ptr()) as a pointer to ``item``s."""
    pointer = types.CPointer(item)

    @intrinsic
    def at(typingctx, address):
        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(pointer))

        return pointer(types.intp), codegen

    return at


# Tensors reach the affine loops as addresses: an array argument costs numba a microsecond of typing and
# unboxing per call, which a small batch's call would feel; an int costs next to nothing. The callers
# (cpu_noise.noising) pass contiguous tensors of the sizes given, and the loops build arrays of exactly
# those sizes over them.
float32_at = _pointer_to(types.float32)
int64_at = _pointer_to(types.int64)
