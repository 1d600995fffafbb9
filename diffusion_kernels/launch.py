"""Host launchers for the fused kernels: layout, allocation, grid.

The noising kernels see a tensor as R rows of ``row_len`` elements in logical
row-major order (row r is the r-th entry of ``t``). Memory layouts are handled
by collapsing the dims that are contiguous with each other in every tensor
involved and passing up to five (size, stride) pairs; a plain contiguous
tensor becomes one dim of stride 1 and indexes with no division at all.

The two noising launchers are registered as ``torch.library.triton_op``s
(``diffusion_kernels::noise_affine`` and ``::noise_affine_backward``) so that
``torch.compile`` sees the Triton kernels directly (through ``wrap_triton``).
Eager calls go straight to the Python bodies and launch the kernels directly:
the dispatcher and the wrap_triton higher-order op cost host time a small
batch would feel.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from typing import NamedTuple, Optional

import torch

from . import seeding
from .backend import interpreter_active, kernels_module, triton_available

MAX_DIMS = 5


def concrete(values):
    """Sizes or strides as ints. Traced with dynamic shapes they are SymInts, and the launch
    arithmetic (collapsing dims, tiling, the packed divisors' bit lengths) needs their values: the
    graph then holds this launch for these sizes (a guard on them; another size traces again)."""
    return [int(v) for v in values]
_EMPTY = ()


def collapse_dims(shape, *strides):
    """Merge adjacent dims that are contiguous in every stride list; drop size-1 dims.

    Returns (sizes, [strides per tensor]) with at least one dim.
    """
    sizes: list[int] = []
    merged = [[] for _ in strides]
    for d in range(len(shape)):
        if shape[d] == 1:
            continue
        if sizes and all(m[-1] == s[d] * shape[d] for m, s in zip(merged, strides)):
            sizes[-1] *= shape[d]
            for m, s in zip(merged, strides):
                m[-1] = s[d]
        else:
            sizes.append(shape[d])
            for m, s in zip(merged, strides):
                m.append(s[d])
    if not sizes:
        return [1], [[1] for _ in strides]
    return sizes, merged


# A strided launch divides the logical index with 31-bit multiply-shifts
# (tiles.unravel), masked lanes past the end included (a tile is under 2**16
# elements); a larger strided tensor is copied to a contiguous one first.
MAX_STRIDED_NUMEL = 2**31 - 2**16


class Layout(NamedTuple):
    """How the kernels address a call's tensors (tiles.unravel, tiles.strided_offset)."""
    contiguous: bool  # every tensor contiguous: the kernels' short-signature entry points
    ndim: int  # collapsed dims, 1 to MAX_DIMS
    sizes: tuple  # z1 … z4 (right-aligned, the outermost size left out)
    divisors: tuple  # d1 … d4: the sizes as packed divisors
    strides: list  # (s0 … s4) per tensor, zeros for an absent one
    shared: bool  # every present tensor has the same strides: one address computation serves all

    def args(self) -> tuple:
        """The strided kernels' size, divisor and stride arguments."""
        return (*self.sizes, *self.divisors, *_flat(self.strides))


def _layout(shape, tensors):
    """The Layout of ``tensors`` (``None`` entries are absent: zero strides, pointer unused).

    None past MAX_DIMS, or for a strided layout of more than MAX_STRIDED_NUMEL elements.
    """
    live = [t for t in tensors if t is not None]
    if all(t.is_contiguous() for t in live):
        # The common case, without the general collapse: one dim of stride 1.
        return Layout(True, 1, (1,) * (MAX_DIMS - 1), _UNIT_DIVISORS,
                      [(0 if t is None else 1,) + (0,) * (MAX_DIMS - 1) for t in tensors], True)
    sizes, strides = collapse_dims(concrete(shape), *[concrete(t.stride()) for t in live])
    ndim = len(sizes)
    if ndim > MAX_DIMS or (ndim > 1 and live[0].numel() > MAX_STRIDED_NUMEL):
        return None
    z = [1] * (MAX_DIMS - ndim) + sizes[1:]
    per_tensor = []
    it = iter(strides)
    for t in tensors:
        if t is None:
            per_tensor.append((0,) * MAX_DIMS)
            continue
        s = next(it)
        per_tensor.append((s[0], *([0] * (MAX_DIMS - ndim)), *s[1:]))
    present = [s for t, s in zip(tensors, per_tensor) if t is not None]
    return Layout(False, ndim, tuple(z), tuple(packed_divisor(size) for size in z), per_tensor,
                  all(s == present[0] for s in present))


def _entry(layout: Layout, strided, contiguous):
    """(kernel, layout arguments, layout keywords) for a call: the short-signature entry point when
    every tensor is contiguous."""
    if layout.contiguous:
        return contiguous, (), {}
    return strided, layout.args(), {"NDIM": layout.ndim, "SHARED_LAYOUT": layout.shared}


def _prepare(shape, tensors, outputs):
    """(tensors, outputs, Layout of both); a layout the kernels cannot address falls back to contiguous copies."""
    layout = _layout(concrete(shape), tensors + outputs)
    if layout is not None:
        return tensors, outputs, layout
    tensors = [t.contiguous() if t is not None else None for t in tensors]
    outputs = [torch.empty(shape, dtype=o.dtype, device=o.device) if o is not None else None for o in outputs]
    return tensors, outputs, _layout(shape, tensors + outputs)


class Planes(NamedTuple):
    """A call whose tensors are channels-last: logical (samples, channels, plane) stored as
    (samples, plane, channels), as channels_last and channels_last_3d are."""
    samples: int
    channels: int
    plane: int


def channels_last_planes(layout: Layout, n: int, rows: int) -> Optional[Planes]:
    """The call's Planes when every tensor shares one channels-last layout and ``t`` has one entry
    per sample or one in all (a sample's rows are then one block of memory); else None."""
    if layout.contiguous or not layout.shared or layout.ndim not in (2, 3):
        return None
    strides = layout.strides[0]
    plane = layout.sizes[-1]
    if layout.ndim == 3:  # (samples, channels, plane); one sample has its size-1 dim collapsed away
        channels, channel_stride, sample_stride = layout.sizes[-2], strides[3], strides[0]
        if sample_stride != channels * plane:
            return None
    else:
        channels, channel_stride = n // plane, strides[0]
    if channel_stride != 1 or strides[4] != channels:
        return None
    samples = n // (channels * plane)
    return Planes(samples, channels, plane) if rows in (1, samples) else None


def packed(*tensors):
    """Each tensor as a packed (contiguous) one, None kept. The kernels index the row-index and
    coefficient tables as packed arrays (``t_ptr + row``): a strided or expanded (stride-0) view
    would be read as if packed, or past its buffer."""
    return tuple(t if t is None or t.is_contiguous() else t.contiguous() for t in tensors)


def _copy_back(pairs):
    for final, used in pairs:
        if final is not None and used is not final:
            final.copy_(used)


def next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def block_quads(kernel_module, row_len: int, paired: bool = False, strided: bool = False) -> int:
    """Quads per program: the kernel's tuned constant on a GPU (its own for 2-byte I/O and for
    strided layouts); under the interpreter, large tiles (fewer, bigger numpy operations) cut to the row.

    The noise stream does not depend on this choice.
    """
    if not interpreter_active():
        if strided:
            return kernel_module.BLOCK_QUADS_STRIDED
        return kernel_module.BLOCK_QUADS_PAIRED if paired else kernel_module.BLOCK_QUADS
    needed = next_power_of_2((row_len + 6) // 4)
    return max(16, min(kernel_module.INTERPRETER_BLOCK_QUADS, needed))


class Tiling(NamedTuple):
    """How a launch cuts ``rows`` rows of ``row_len`` elements into programs."""
    rows: int
    row_len: int
    block: int  # quads per program
    chunks: int  # programs per row
    divisor: int  # chunks as a packed divisor: the kernels find a program's row with a multiply and a shift

    @property
    def grid(self) -> tuple[int]:
        return (self.rows * self.chunks,)

    @property
    def row_args(self) -> tuple[int, int, int]:
        """The kernels' (row_len, chunks_per_row, row_divisor) arguments."""
        return self.row_len, self.chunks, self.divisor


def divisor_magic(d: int) -> tuple[int, int]:
    """(m, s) with n // d == (n · m) >> s for every 0 <= n < 2**31, and 2**31 <= m < 2**32.

    Granlund & Montgomery (1994), Theorem 4.2, for 31-bit dividends: with
    k = ceil(log2 d) and m = ceil(2**(31 + k) / d), 0 <= m·d − 2**(31 + k) < d <= 2**k,
    which makes the quotient exact (tiles.magic_divide evaluates it in 32-bit
    words).
    """
    if not 1 <= d < 2**31:
        raise ValueError(f"divisor must be in [1, 2**31), got {d}")
    k = (d - 1).bit_length()
    return -(-(1 << (31 + k)) // d), 31 + k


def packed_divisor(d: int) -> int:
    """d as the kernels take it (tiles.magic_divide): the multiplier in the low word, shift − 30 in the high.

    The high word is at least 1, so the value is at least 2**32 and always an
    int64 argument (Triton's interpreter holds ints in [2**31, 2**32) as uint32).
    """
    m, shift = divisor_magic(d)
    return (shift - 30) << 32 | m


_UNIT_DIVISORS = (packed_divisor(1),) * (MAX_DIMS - 1)
# A channels-last call that draws no noise is elementwise in memory order, where every tensor is
# contiguous: the contiguous kernels run on it as it lies.
_MEMORY_ORDER = Layout(True, 1, (1,) * (MAX_DIMS - 1), _UNIT_DIVISORS, [], True)


def tiling(kernel_module, n: int, rows: int, elem_offset: int = 0, paired: bool = False,
           strided: bool = False) -> Tiling:
    """The tiling of n elements in ``rows`` rows for ``kernel_module``'s kernels (``paired``: contiguous
    2-byte I/O, ``strided``: a strided layout; see block_quads)."""
    row_len = n // rows
    return _tiling(rows, row_len, block_quads(kernel_module, row_len, paired, strided), elem_offset)


@functools.lru_cache(maxsize=256)
def _tiling(rows: int, row_len: int, block: int, elem_offset: int) -> Tiling:
    # A training loop repeats one shape: the divisor arithmetic is done once per shape.
    chunks = chunks_per_row(row_len, elem_offset, block)
    return Tiling(rows, row_len, block, chunks, packed_divisor(chunks))


def chunks_per_row(row_len: int, elem_offset: int, block: int) -> int:
    if row_len % 4 == 0 and elem_offset % 4 == 0:
        quads = row_len // 4
    else:
        # A misaligned row of L elements straddles at most (L + 2) // 4 + 1 quads.
        quads = (row_len + 6) // 4
    return -(-quads // block)


def fast_math() -> bool:
    """Box–Muller on the GPU's special-function instructions (kernels/philox_normal.py): every GPU
    launch. Triton's interpreter has no such instructions and runs the math library's functions."""
    return not interpreter_active()


def paired(tensor: torch.Tensor, layout: Layout) -> bool:
    """Two quads per thread (8 elements) for contiguous 2-byte I/O, so a thread's elements fill one
    16-byte vector. A strided layout accesses elements one by one: pairing would only add a
    shared-memory shuffle between the noise tile and the addresses."""
    return tensor.element_size() == 2 and layout.contiguous


# Triton's interpreter swaps module-level functions of triton.language for its own while a
# kernel runs and swaps them back after, so two interpreted launches at once corrupt each other
# (errors, garbage values). Interpreted launches therefore take turns; compiled launches need no
# lock (Triton's launch path is thread-safe once a kernel is compiled).
_INTERPRETER_LOCK = threading.RLock()


def _device_guard(tensor: torch.Tensor):
    """The scope of one launch: the tensor's GPU made current (Triton launches on the current device;
    a no-op in the usual case where it already is, which saves two device switches per call), or
    the interpreter's lock on CPU."""
    if tensor.device.type == "cuda" and tensor.device.index != torch.cuda.current_device():
        return torch.cuda.device(tensor.device)
    if tensor.device.type == "cpu":
        return _INTERPRETER_LOCK
    return contextlib.nullcontext()


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


def _launcher(kernel):
    """The kernel wrapped for torch.compile when running as a registered op's body, else as is."""
    if getattr(_op_body, "active", False):
        return _TracedInterpreterLaunch(kernel) if interpreter_active() else torch.library.wrap_triton(kernel)
    return kernel


def _register_triton_op(name: str, placeholder_dtype):
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


# Compile options of a launch that checks t on the device: debug turns the
# kernel's device_assert on; the overflow sanitiser debug would also add stays off.
_CHECKED = {"debug": True, "sanitize_overflow": False}


def _checked(check_t: bool) -> dict:
    """The launch options for ``check_t``. Only compiled kernels take them: Triton's interpreter
    (some versions refuse the keywords) runs assertions by its own debug setting."""
    return _CHECKED if check_t and not interpreter_active() else {}


def seed_parts(seed):
    """(seed tensor or None, low half, high half) for an int seed or a 1-element int64 device tensor."""
    if isinstance(seed, torch.Tensor):
        return seed, 0, 0
    return (None, *seeding.split_seed(seed))


def _seed_args(seed_tensor, seed_lo, seed_hi, placeholder):
    if seed_tensor is not None:
        return 0, 0, seed_tensor, True
    return seed_lo, seed_hi, placeholder, False


def _flat(items):
    return [v for item in items for v in item]


@_register_triton_op("diffusion_kernels::noise_affine", lambda x0: x0.dtype)
def noise_affine(x0: torch.Tensor, t_rows: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                 c: Optional[torch.Tensor], d: Optional[torch.Tensor], noise: Optional[torch.Tensor],
                 seed_tensor: Optional[torch.Tensor], seed_lo: int, seed_hi: int, stream: int, step: int,
                 offset_strength: float, write_noise: bool, write_v: bool,
                 elem_offset: int, check_t: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out, ε, v): out = a[t]·x0 + b[t]·ε and, with ``write_v``, v = c[t]·x0 + d[t]·ε.

    With ``check_t`` the kernel asserts on the device that every t lies in
    [0, len(a)) (no host sync; a failure surfaces as CUDA's device-side assert).

    ``t_rows`` is an int64 tensor of R row indices into the float32 tables,
    R dividing x0.numel(). ε is ``noise`` or, when None, drawn from the seed
    (``seed_tensor`` on the device, else the int32 halves). Outputs not asked
    for come back None (0-element tensors from the registered op). Outputs keep
    x0's memory format.
    """
    km = kernels_module()
    t_rows, a, b, c, d = packed(t_rows, a, b, c, d)
    out = torch.empty_like(x0)
    eps = torch.empty_like(x0) if write_noise and noise is None else None
    v = torch.empty_like(x0) if write_v else None
    n = int(x0.numel())
    if n > 0:
        (x0_, noise_), (out_, eps_, v_), layout = _prepare(x0.shape, [x0, noise], [out, eps, v])
        rows = int(t_rows.numel())
        planes = channels_last_planes(layout, n, rows)
        if planes is not None and noise is None:
            if _channels_last_draw(x0_, out_, eps_, v_, planes, t_rows, a, b, c, d, seed_tensor, seed_lo, seed_hi,
                                   stream, step, offset_strength, elem_offset, check_t):
                return out, eps, v
        elif planes is not None:
            layout = _MEMORY_ORDER
        tile = tiling(km.q_sample, n, rows, elem_offset, paired(x0, layout), not layout.contiguous)
        s_lo, s_hi, s_ptr, from_ptr = _seed_args(seed_tensor, seed_lo, seed_hi, t_rows)
        kernel, layout_args, layout_kw = _entry(layout, km.q_sample.noise_affine_fwd_kernel,
                                                km.q_sample.noise_affine_fwd_contiguous_kernel)
        with _device_guard(x0):
            _launcher(kernel)[tile.grid](
                x0_, noise_ if noise_ is not None else x0_, out_, eps_ if eps_ is not None else out_,
                v_ if v_ is not None else out_,
                t_rows, a, b, c if c is not None else a, d if d is not None else b, int(a.numel()),
                *tile.row_args, elem_offset,
                s_lo, s_hi, s_ptr, seeding.as_int32(stream), step, offset_strength, *layout_args, **layout_kw,
                HAS_NOISE=noise is not None, WRITE_NOISE=eps is not None, WRITE_V=v is not None,
                HAS_OFFSET=offset_strength != 0.0 and noise is None, SEED_FROM_PTR=from_ptr, BLOCK=tile.block,
                SOFT_BF16=interpreter_active(), FAST_MATH=fast_math(), PAIRED=paired(x0, layout),
                num_warps=km.q_sample.NUM_WARPS, **_checked(check_t),
            )
        _copy_back([(out, out_), (eps, eps_), (v, v_)])
    return out, eps, v


@_register_triton_op("diffusion_kernels::noise_affine_backward", lambda g: torch.float32)
def noise_affine_backward(g: torch.Tensor, gv: Optional[torch.Tensor], t_rows: torch.Tensor, a: torch.Tensor,
                          b: torch.Tensor, c: Optional[torch.Tensor], d: Optional[torch.Tensor],
                          x0: Optional[torch.Tensor], noise: Optional[torch.Tensor],
                          seed_tensor: Optional[torch.Tensor], seed_lo: int, seed_hi: int, stream: int, step: int,
                          offset_strength: float, x0_dtype: Optional[torch.dtype],
                          noise_dtype: Optional[torch.dtype], need_tables: bool,
                          elem_offset: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad_x0, grad_noise, per-row sums) of out = a·x0 + b·ε and v = c·x0 + d·ε with upstream (g, gv).

    grad_x0 is made when ``x0_dtype`` is given, grad_noise when ``noise_dtype``
    is. With ``need_tables`` the (R, 4) per-row sums Σ g·x0, Σ g·ε, Σ gv·x0,
    Σ gv·ε come back (they read ``x0`` and ``noise``, or regenerate ε from the
    seed). What was not asked for comes back None (0-element tensors from the
    registered op).
    """
    km = kernels_module()
    t_rows, a, b, c, d = packed(t_rows, a, b, c, d)
    gx = torch.empty_like(g, dtype=x0_dtype) if x0_dtype is not None else None
    gn = torch.empty_like(g, dtype=noise_dtype) if noise_dtype is not None else None
    rows = int(t_rows.numel())
    n = int(g.numel())
    sums = torch.zeros((rows, 4), dtype=torch.float32, device=g.device) if need_tables else None
    if n > 0:
        x0_in = x0 if need_tables else None
        noise_in = noise if need_tables else None
        (g_, gv_, x0_, noise_), (gx_, gn_), layout = _prepare(g.shape, [g, gv, x0_in, noise_in], [gx, gn])
        if (not need_tables or noise is not None) and channels_last_planes(layout, n, rows) is not None:
            layout = _MEMORY_ORDER
        tile = tiling(km.q_sample, n, rows, elem_offset, paired(g, layout), not layout.contiguous)
        partials = torch.empty((*tile.grid, 4), dtype=torch.float32, device=g.device) if need_tables else None
        s_lo, s_hi, s_ptr, from_ptr = _seed_args(seed_tensor, seed_lo, seed_hi, t_rows)
        kernel, layout_args, layout_kw = _entry(layout, km.q_sample.noise_affine_bwd_kernel,
                                                km.q_sample.noise_affine_bwd_contiguous_kernel)
        with _device_guard(g):
            _launcher(kernel)[tile.grid](
                g_, gv_ if gv_ is not None else g_, x0_ if x0_ is not None else g_,
                noise_ if noise_ is not None else g_, gx_ if gx_ is not None else g_, gn_ if gn_ is not None else g_,
                partials if partials is not None else a,
                t_rows, a, b, c if c is not None else a, d if d is not None else b, int(a.numel()),
                *tile.row_args, elem_offset,
                s_lo, s_hi, s_ptr, seeding.as_int32(stream), step, offset_strength, *layout_args, **layout_kw,
                HAS_NOISE=noise is not None, HAS_GV=gv is not None,
                NEED_GX=gx is not None, NEED_GN=gn is not None, NEED_PARTIALS=need_tables,
                HAS_OFFSET=offset_strength != 0.0 and noise is None, SEED_FROM_PTR=from_ptr, BLOCK=tile.block,
                SOFT_BF16=interpreter_active(), FAST_MATH=fast_math(), PAIRED=paired(g, layout),
                num_warps=km.q_sample.NUM_WARPS,
            )
        _copy_back([(gx, gx_), (gn, gn_)])
        if need_tables:
            sums = partials.view(rows, tile.chunks, 4).sum(dim=1)
    return gx, gn, sums


def channels_last_tiling(kernel_module, planes: Planes, element_size: int, elem_offset: int = 0) -> Optional[Tiling]:
    """The tiling of a draw through the channels-last tile (kernels/tiles.channels_last_tile): the
    contiguous tile's quads per program, BLOCK_J = block // channels columns of them. None where the
    tile does not apply: a channel count that is not a power of two in [2, CHANNELS_LAST_MAX_C],
    planes that are not whole quads, a stream that does not start at element 0."""
    C = planes.channels
    if (C & (C - 1) or not 2 <= C <= kernels_module().tiles.CHANNELS_LAST_MAX_C or planes.plane % 4
            or elem_offset != 0):
        return None
    row_len = C * planes.plane
    block = max(block_quads(kernel_module, row_len, paired=element_size == 2), C)
    return _tiling(planes.samples, row_len, block, 0)


def _channels_last_draw(x0, out, eps, v, planes: Planes, t_rows, a, b, c, d, seed_tensor, seed_lo, seed_hi, stream,
                        step, offset_strength, elem_offset, check_t) -> bool:
    """Launch the channels-last drawn-noise kernel; False, launching nothing, where its tile does not
    apply (channels_last_tiling)."""
    km = kernels_module()
    tile = channels_last_tiling(km.q_sample, planes, x0.element_size(), elem_offset)
    if tile is None:
        return False
    C = planes.channels
    s_lo, s_hi, s_ptr, from_ptr = _seed_args(seed_tensor, seed_lo, seed_hi, t_rows)
    with _device_guard(x0):
        _launcher(km.q_sample.noise_affine_fwd_channels_last_kernel)[tile.grid](
            x0, out, eps if eps is not None else out, v if v is not None else out,
            t_rows, int(t_rows.numel() > 1), a, b, c if c is not None else a, d if d is not None else b, int(a.numel()),
            planes.plane // 4, tile.chunks, tile.divisor,
            s_lo, s_hi, s_ptr, seeding.as_int32(stream), step, offset_strength,
            C=C, WRITE_NOISE=eps is not None, WRITE_V=v is not None, HAS_OFFSET=offset_strength != 0.0,
            SEED_FROM_PTR=from_ptr, BLOCK_J=tile.block // C, SOFT_BF16=interpreter_active(), FAST_MATH=fast_math(),
            num_warps=km.q_sample.NUM_WARPS, **_checked(check_t),
        )
    return True


def q_sample_forward(x0, t_rows, sqrt_ab, sqrt_1m_ab, noise=None, *, seed=0, stream: int = 0, step: int = 0,
                     write_noise: bool = False, elem_offset: int = 0):
    """(x_t, ε or None) for an int seed or a 1-element int64 device tensor: the common direct call."""
    seed_tensor, lo, hi = seed_parts(seed)
    out, eps, _ = noise_affine(x0, t_rows, sqrt_ab, sqrt_1m_ab, None, None, noise, seed_tensor, lo, hi, stream,
                               step, 0.0, write_noise, False, elem_offset)
    return out, (eps if write_noise and noise is None else None)


def forward_trajectory(x0, sqrt_alpha, sqrt_beta, t_end: int, *, seed=0, stream: int = 0, snapshot_steps=()):
    """x_{t_end} after the steps 0 … t_end, and the snapshots at ``snapshot_steps`` (sorted, unique).

    Returns (x_t_end, snapshots) where snapshots has shape (len(snapshot_steps), *x0.shape).
    """
    km = kernels_module()
    sqrt_alpha, sqrt_beta = packed(sqrt_alpha, sqrt_beta)
    src = x0.contiguous()
    out = torch.empty_like(src)
    snaps = torch.empty((len(snapshot_steps), *x0.shape), dtype=x0.dtype, device=x0.device)
    n = src.numel()
    if n == 0:
        return out, snaps
    snap_index = torch.full((t_end + 1,), -1, dtype=torch.int32)
    for k, s in enumerate(snapshot_steps):
        snap_index[s] = k
    snap_index = snap_index.to(x0.device)
    tile = tiling(km.trajectory, n, 1)
    seed_tensor, lo, hi = seed_parts(seed)
    s_lo, s_hi, s_ptr, from_ptr = _seed_args(seed_tensor, lo, hi, snap_index)
    with _device_guard(x0):
        km.trajectory.forward_trajectory_kernel[tile.grid](
            src, out, snaps if len(snapshot_steps) else out, snap_index,
            sqrt_alpha, sqrt_beta, t_end, *tile.row_args,
            s_lo, s_hi, s_ptr, seeding.as_int32(stream),
            HAS_SNAPSHOTS=len(snapshot_steps) > 0, SEED_FROM_PTR=from_ptr, BLOCK=tile.block,
            SOFT_BF16=interpreter_active(), FAST_MATH=fast_math(), PAIRED=km.trajectory.PAIRED,
            num_warps=km.trajectory.NUM_WARPS,
        )
    return (out if x0.is_contiguous() else torch.empty_like(x0).copy_(out)), snaps


def _mse_setup(pred: torch.Tensor, rows: int, seed, layout: Layout):
    """(kernels, Tiling, Planes or None, seed tensor, seed halves) of a noise_mse launch; Planes when
    the channels-last kernels take the prediction (the Tiling is then theirs)."""
    km = kernels_module()
    planes = channels_last_planes(layout, pred.numel(), rows)
    tile = planes and channels_last_tiling(km.noise_mse, planes, pred.element_size())
    if not tile:
        planes = None
        tile = tiling(km.noise_mse, pred.numel(), rows, paired=paired(pred, layout), strided=not layout.contiguous)
    return km, tile, planes, *seed_parts(seed)


def noise_mse_forward(pred: torch.Tensor, rows: int, seed, stream: int, offset_strength: float) -> torch.Tensor:
    """Σ (pred − ε)² as a float32 0-d tensor, ε regenerated from (seed, stream) with ``rows`` offset rows."""
    if pred.numel() == 0:
        return pred.new_zeros((), dtype=torch.float32)
    (pred_,), _, layout = _prepare(pred.shape, [pred], [])
    km, tile, planes, seed_tensor, lo, hi = _mse_setup(pred_, rows, seed, layout)
    partials = torch.empty(tile.grid, dtype=torch.float32, device=pred.device)
    s_lo, s_hi, s_ptr, from_ptr = _seed_args(seed_tensor, lo, hi, partials)
    with _device_guard(pred):
        if planes is not None:
            km.noise_mse.noise_mse_fwd_channels_last_kernel[tile.grid](
                pred_, partials, int(rows > 1), planes.plane // 4, tile.chunks, tile.divisor,
                s_lo, s_hi, s_ptr, seeding.as_int32(stream), offset_strength,
                C=planes.channels, HAS_OFFSET=offset_strength != 0.0, SEED_FROM_PTR=from_ptr,
                BLOCK_J=tile.block // planes.channels, FAST_MATH=fast_math(), num_warps=km.noise_mse.NUM_WARPS,
            )
        else:
            km.noise_mse.noise_mse_fwd_kernel[tile.grid](
                pred_, partials, *tile.row_args, s_lo, s_hi, s_ptr, seeding.as_int32(stream), offset_strength,
                *layout.args(),
                NDIM=layout.ndim, HAS_OFFSET=offset_strength != 0.0, SEED_FROM_PTR=from_ptr, BLOCK=tile.block,
                FAST_MATH=fast_math(), PAIRED=paired(pred, layout), num_warps=km.noise_mse.NUM_WARPS,
            )
    return partials.sum()


def noise_mse_backward(pred: torch.Tensor, upstream: torch.Tensor, scale: float, rows: int, seed, stream: int,
                       offset_strength: float) -> torch.Tensor:
    """2·scale·upstream·(pred − ε), in pred's dtype and layout."""
    grad = torch.empty_like(pred)
    if pred.numel() == 0:
        return grad
    (pred_,), (grad_,), layout = _prepare(pred.shape, [pred], [grad])
    km, tile, planes, seed_tensor, lo, hi = _mse_setup(pred_, rows, seed, layout)
    s_lo, s_hi, s_ptr, from_ptr = _seed_args(seed_tensor, lo, hi, grad_)
    upstream = upstream.to(device=pred.device, dtype=torch.float32).reshape(1)
    with _device_guard(pred):
        if planes is not None:
            km.noise_mse.noise_mse_bwd_channels_last_kernel[tile.grid](
                pred_, grad_, upstream, scale, int(rows > 1), planes.plane // 4, tile.chunks, tile.divisor,
                s_lo, s_hi, s_ptr, seeding.as_int32(stream), offset_strength,
                C=planes.channels, HAS_OFFSET=offset_strength != 0.0, SEED_FROM_PTR=from_ptr,
                BLOCK_J=tile.block // planes.channels, SOFT_BF16=interpreter_active(), FAST_MATH=fast_math(),
                num_warps=km.noise_mse.NUM_WARPS,
            )
        else:
            km.noise_mse.noise_mse_bwd_kernel[tile.grid](
                pred_, grad_, upstream, scale, *tile.row_args,
                s_lo, s_hi, s_ptr, seeding.as_int32(stream), offset_strength, *layout.args(),
                NDIM=layout.ndim, SHARED_LAYOUT=layout.shared, HAS_OFFSET=offset_strength != 0.0,
                SEED_FROM_PTR=from_ptr, BLOCK=tile.block, SOFT_BF16=interpreter_active(),
                FAST_MATH=fast_math(), PAIRED=paired(pred, layout), num_warps=km.noise_mse.NUM_WARPS,
            )
    _copy_back([(grad, grad_)])
    return grad
