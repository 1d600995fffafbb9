"""Launchers of the noising family (kernels/noising.py): out = a[t]·x0 + b[t]·ε (and v), forward
and backward, contiguous, strided and channels-last."""
from __future__ import annotations

import functools
from types import ModuleType
from typing import NamedTuple, Optional, cast

import torch

from .. import seeding, transfer
from ..dispatch import interpreter_active
from ..launch.layout import entry_point, prepare, Planes, channels_last_planes, packed, copy_back, MEMORY_ORDER, paired
from ..launch.tiling import (WHOLE_TILES, Tiling, tiling, channels_last_tiling, fewest_warps, gpu_units, grouped_tiles,
                             grouping_units, launch_options, math_mode, row_mode, run_alignment, units_mode,
                             whole_row_tile)
from ..schedules import checked_steps
from ..seeding import seed_args, seed_parts
from ..launch.registry import device_guard, launcher, register_triton_op


@register_triton_op("diffusion_kernels::noising", lambda x0: x0.dtype)
def forward(x0: torch.Tensor, t_rows: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
            c: Optional[torch.Tensor], d: Optional[torch.Tensor], noise: Optional[torch.Tensor],
            seed_tensor: Optional[torch.Tensor], seed_lo: int, seed_hi: int, stream: int, step: int,
            offset_strength: float, write_noise: bool, write_v: bool, elem_offset: int, check_t: bool = False,
            perturbation: float = 0.0, units: Optional[torch.Tensor] = None,
            units_aligned: bool = False, units_narrow: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out, ε, v): out = a[t]·x0 + b[t]·ε and, with ``write_v``, v = c[t]·x0 + d[t]·ε.

    A nonzero ``perturbation`` γ (drawn ε only) makes out = a[t]·x0 + b[t]·(ε + γ·ε′), ε′ the stream's
    PERTURB_STEP normals; ε and v keep ε.

    With ``check_t`` the kernel asserts on the device that every t lies in
    [0, len(a)) (no host sync; a failure surfaces as CUDA's device-side assert).

    ``t_rows`` is an int64 tensor of R row indices into the float32 tables,
    R dividing x0.numel(). ε is ``noise`` or, when None, drawn from the seed
    (``seed_tensor`` on the device, else the int32 halves). Outputs not asked
    for come back None (0-element tensors from the registered op). Outputs keep
    x0's memory format.

    ``units`` (a shard of a global tensor: sharding.Units.table) makes row r a run of global positions
    from ``units[r, 0]`` (its offset noise row ``units[r, 1]``); ``t_rows`` then has one entry per run, and
    ``units_aligned`` says every run starts on a quad and holds whole quads (sharding.Units.aligned),
    ``units_narrow`` that the global tensor has at most 2**34 elements (sharding.Units.narrow).
    """
    import diffusion_kernels.kernels.noising as noising  # the absolute form: a third of the relative one's cost

    t_rows, a, b, c, d = packed(t_rows, a, b, c, d)
    out = torch.empty_like(x0)
    eps = torch.empty_like(x0) if write_noise and noise is None else None
    v = torch.empty_like(x0) if write_v else None
    n = int(x0.numel())  # a traced size (SymInt) as its value: the launch is specialised to it
    if n == 0:
        return out, eps, v
    rows = int(t_rows.numel())
    drawn = noise is None
    if x0.is_contiguous() and (drawn or noise.is_contiguous()):
        # The usual call: every tensor contiguous (the outputs are made like x0), launched by the short
        # entry point with settings that depend on a few facts only, worked out once for them.
        kernel, grid, row_args, settings = _contiguous_launch(
            noising, n, rows, x0.element_size(), x0.device, not drawn, eps is not None, v is not None,
            offset_strength != 0.0 and drawn, seed_tensor is not None, perturbation != 0.0 and drawn, check_t,
            run_alignment(elem_offset, units, units_aligned), units_mode(units, units_aligned, units_narrow),
            words_aligned(x0))
        x0_, noise_, out_, eps_, v_, layout_args = x0, noise, out, eps, v, ()
    else:
        (x0_, noise_), (out_, eps_, v_), layout = prepare(x0.shape, [x0, noise], [out, eps, v])
        planes = channels_last_planes(layout, n, rows) if units is None else None
        if planes is not None and drawn:
            if channels_last_draw(x0_, out_, eps_, v_, planes, t_rows, a, b, c, d, seed_tensor, seed_lo, seed_hi,
                                  stream, step, offset_strength, elem_offset, check_t, perturbation):
                return out, eps, v
        elif planes is not None:
            layout = MEMORY_ORDER
        sms = gpu_units(x0.device)
        tile, mode = forward_tiles(tiling(noising, n, rows, run_alignment(elem_offset, units, units_aligned),
                                          paired(x0, layout), not layout.contiguous, sms),
                                   elem_offset, units_mode(units, units_aligned, units_narrow), sms,
                                   words_aligned(x0_))
        kernel, layout_args, layout_kw = entry_point(layout, noising.noising_fwd_kernel,
                                                     noising.noising_fwd_contiguous_kernel)
        grid, row_args = tile.grid, tile.row_args
        settings = dict(
            **layout_kw, HAS_NOISE=not drawn, WRITE_NOISE=eps is not None, WRITE_V=v is not None,
            HAS_OFFSET=offset_strength != 0.0 and drawn, SEED_FROM_PTR=seed_tensor is not None, BLOCK=tile.block,
            SOFT_BF16=interpreter_active(), MATH=math_mode(x0.device), PAIRED=paired(x0, layout),
            PERTURB=perturbation != 0.0 and drawn, UNITS=mode, TILES=tile.tiles,
            **launch_options(noising, x0.device, tile.warps, check_t))
    s_lo, s_hi, s_ptr, _ = seed_args(seed_tensor, seed_lo, seed_hi, t_rows)
    _launch(kernel, grid, x0_, x0_ if drawn else noise_, out_, eps_ if eps_ is not None else out_,
            v_ if v_ is not None else out_, t_rows, a, b, c if c is not None else a, d if d is not None else b,
            row_args, elem_offset, t_rows if units is None else units, s_lo, s_hi, s_ptr, stream, step,
            offset_strength, perturbation, layout_args, settings)
    copy_back([(out, out_), (eps, eps_), (v, v_)])
    return out, eps, v


def _launch(kernel, grid, x0, noise, out, eps, v, t_rows, a, b, c, d, row_args, elem_offset, units, seed_lo,
            seed_hi, seed_ptr, stream, step, offset_strength, perturbation, layout_args, settings) -> None:
    """One launch of a forward kernel; absent tensors stand in by ones the kernel does not read."""
    with device_guard(x0):
        launcher(kernel)[grid](x0, noise, out, eps, v, t_rows, a, b, c, d, checked_steps(a.numel()), *row_args,
                               elem_offset, units,
                               seed_lo, seed_hi, seed_ptr, seeding.as_int32(stream), step, offset_strength,
                               perturbation, *layout_args, **settings)


class PlainLaunch(NamedTuple):
    """What :func:`plain_forward` launches for a kind of call, kept by its plan: every argument that does
    not change from call to call, in the kernel's order."""
    t_as_is: bool  # the call's t is read where it lies, as it lies (1-D, on x0's device)
    kernels: ModuleType  # kernels/noising.py (its kernel is looked up per call)
    grid: tuple
    tables: tuple  # (a, b, c, d, table length, *row arguments, element offset): after t_rows
    options: tuple  # (step, offset strength, perturbation, the constexprs in the kernel's order): after the stream
    settings: dict  # the launch's options (warps, debug)
    constants: tuple  # the tile constants they were made with (_constants)
    check_words: bool  # made for a 2-byte x0 read as 32-bit words: a call's x0 must start on a 4-byte boundary


def plain_settings(x0: torch.Tensor, index: torch.Tensor, a: torch.Tensor, b: torch.Tensor, write_noise: bool,
                   check_t: bool) -> PlainLaunch | None:
    """The :class:`PlainLaunch` of :func:`plain_forward` for a kind of call: a contiguous ``x0`` of this
    shape, dtype and device, t like ``index`` and the float32 tables ``a``, ``b`` (noising/plans.py keeps
    it); None where there is nothing to launch."""
    import diffusion_kernels.kernels.noising as noising

    if x0.numel() == 0:
        return None
    as_is = index.device == x0.device and index.ndim == 1 and index.numel() > 0
    constants = _constants(noising)
    _, grid, row_args, settings = _contiguous_launch(noising, x0.numel(), max(index.numel(), 1), x0.element_size(),
                                                     x0.device, False, write_noise, False, False, False, False,
                                                     check_t, 0, 0, words_aligned(x0))
    # The constexprs passed by position, as the kernel lists them: a launch binds fewer keywords.
    names = noising.noising_fwd_contiguous_kernel.arg_names
    constexprs = tuple(settings[name] for name in names[names.index("perturbation") + 1:])
    options = {name: value for name, value in settings.items() if name not in names}
    return PlainLaunch(as_is, noising, grid, (a, b, a, b, checked_steps(a.numel()), *row_args, 0),
                       (0, 0.0, 0.0, *constexprs),
                       options, constants, x0.element_size() == 2 and settings["UNITS"] == WHOLE_TILES)


def rows_of(index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """t as the kernels read it: one int64 entry per row, on the device (at least one entry)."""
    t_rows = transfer.to_device(index, device)
    if t_rows.ndim != 1:
        t_rows = t_rows.reshape(-1)
    return t_rows if t_rows.numel() else t_rows.new_zeros(1)


def _constants(kernels) -> tuple:
    """What a kind's settings depend on beyond the call: the tile constants, and the function that picks the
    Box–Muller functions of a device (its answer is fixed for a device; the function is compared)."""
    return (kernels.BLOCK_QUADS, kernels.BLOCK_QUADS_PAIRED, kernels.INTERPRETER_BLOCK_QUADS, kernels.NUM_WARPS,
            math_mode)


def plain_forward(x0: torch.Tensor, index: torch.Tensor, tables: tuple, seed: int, stream: int, write_noise: bool,
                  plain: PlainLaunch | None) -> tuple:
    """(x_t, ε or None) of :func:`forward`'s most usual call: a contiguous ``x0``, ε drawn from an int seed,
    t (int64) as ``index``, nothing else, launched as ``plain`` (:func:`plain_settings`, which holds the
    tables) says for its kind (made again if the tile constants changed since, or for an x0 it may not read
    as 32-bit words). noising/triton.py's ``plain``: the backends' common signature of that call
    (noising/cpu.py)."""
    if plain is None:
        return torch.empty_like(x0), (torch.empty_like(x0) if write_noise else None)
    t_rows = index if plain.t_as_is else rows_of(index, x0.device)
    if not t_rows.is_contiguous():
        t_rows = t_rows.contiguous()  # the kernel reads t packed
    if plain.constants != _constants(plain.kernels) or (plain.check_words and x0.data_ptr() % 4):
        plain = cast(PlainLaunch, plain_settings(x0, index, tables[0], tables[1], write_noise,
                                                 plain.settings.get("debug", False)))
    out = torch.empty_like(x0)
    eps = torch.empty_like(x0) if write_noise else None
    lo, hi = seed & 0xFFFFFFFF, seed >> 32
    # seeding.split_seed's and as_int32's int32 words, inline (Triton types int arguments by value).
    lo, hi, word = lo - ((lo >> 31) << 32), hi - ((hi >> 31) << 32), stream - ((stream >> 31) << 32)
    # Launched directly: a plain call never runs as a registered op's body (torch.compile takes the full
    # path), where launcher() would wrap the kernel.
    with device_guard(x0):
        plain.kernels.noising_fwd_contiguous_kernel[plain.grid](
            x0, x0, out, out if eps is None else eps, out, t_rows, *plain.tables, t_rows, lo, hi, t_rows, word,
            *plain.options, **plain.settings)
    return out, eps


@functools.lru_cache(maxsize=256)
def _launch_settings(kernels, n: int, rows: int, element_size: int, device: torch.device, given_noise: bool,
                     write_noise: bool, write_v: bool, offset: bool, seed_from_ptr: bool, perturb: bool,
                     check_t: bool, alignment: int, units: int, aligned_words: bool, constants: tuple):
    math = constants[-1](device)
    sms = gpu_units(device)
    tile, mode = forward_tiles(tiling(kernels, n, rows, alignment, element_size == 2, False, sms), alignment, units,
                               sms, aligned_words)
    settings = dict(
        HAS_NOISE=given_noise, WRITE_NOISE=write_noise, WRITE_V=write_v, HAS_OFFSET=offset,
        SEED_FROM_PTR=seed_from_ptr, BLOCK=tile.block, SOFT_BF16=interpreter_active(), MATH=math,
        PAIRED=element_size == 2, PERTURB=perturb,
        UNITS=mode, TILES=tile.tiles,
        **launch_options(kernels, device, tile.warps, check_t))
    return tile.grid, tile.row_args, settings


def forward_tiles(tile: Tiling, elem_offset: int, units: int, sms: Optional[int], aligned_words: bool):
    """(tiling, row_tile's UNITS) of a forward launch on a GPU of ``sms`` SMs (CUs; None: no GPU): rows of
    one tensor that fewer warps make whole tiles take that tile (tiling.whole_row_tile); rows of whole tiles
    take WHOLE_TILES; those and the NARROW modes' rows, with programs to spare, several tiles per program
    (tiling.grouped_tiles, on the SMs tiling.grouping_units counts)."""
    tile = whole_row_tile(tile, elem_offset, units, fewest_warps(sms))
    mode = row_mode(tile, elem_offset, units, aligned_words)
    return grouped_tiles(tile, grouping_units(sms), mode), mode


def words_aligned(x0: torch.Tensor) -> bool:
    """Whether a WHOLE_TILES launch may read ``x0`` as 32-bit words (kernels/convert.load_bf16_words): it
    is not a 2-byte tensor, or it starts on a 4-byte boundary."""
    return x0.element_size() != 2 or x0.data_ptr() % 4 == 0


def _contiguous_launch(kernels, *facts):
    """(kernel, grid, row arguments, settings) of a contiguous forward launch from the facts that decide
    them; the tile constants (which a tuning sweep may change) and the Box–Muller functions of the device
    are among them. The kernel is looked up per call."""
    return (kernels.noising_fwd_contiguous_kernel, *_launch_settings(kernels, *facts, _constants(kernels)))


@register_triton_op("diffusion_kernels::noising_backward", lambda g: torch.float32)
def backward(g: torch.Tensor, gv: Optional[torch.Tensor], t_rows: torch.Tensor, a: torch.Tensor,
             b: torch.Tensor, c: Optional[torch.Tensor], d: Optional[torch.Tensor],
             x0: Optional[torch.Tensor], noise: Optional[torch.Tensor],
             seed_tensor: Optional[torch.Tensor], seed_lo: int, seed_hi: int, stream: int, step: int,
             offset_strength: float, x0_dtype: Optional[torch.dtype],
             noise_dtype: Optional[torch.dtype], need_tables: bool,
             elem_offset: int, units: Optional[torch.Tensor] = None, units_aligned: bool = False,
             units_narrow: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(grad_x0, grad_noise, per-row sums) of out = a·x0 + b·ε and v = c·x0 + d·ε with upstream (g, gv).

    grad_x0 is made when ``x0_dtype`` is given, grad_noise when ``noise_dtype``
    is. With ``need_tables`` the (R, 4) per-row sums Σ g·x0, Σ g·ε, Σ gv·x0,
    Σ gv·ε come back (they read ``x0`` and ``noise``, or regenerate ε from the
    seed). What was not asked for comes back None (0-element tensors from the
    registered op). ``units``, ``units_aligned`` and ``units_narrow`` as in :func:`forward`.
    """
    from ..kernels import noising

    t_rows, a, b, c, d = packed(t_rows, a, b, c, d)
    gx = torch.empty_like(g, dtype=x0_dtype) if x0_dtype is not None else None
    gn = torch.empty_like(g, dtype=noise_dtype) if noise_dtype is not None else None
    rows = int(t_rows.numel())
    n = int(g.numel())
    sums = torch.zeros((rows, 4), dtype=torch.float32, device=g.device) if need_tables else None
    if n > 0:
        x0_in = x0 if need_tables else None
        noise_in = noise if need_tables else None
        (g_, gv_, x0_, noise_), (gx_, gn_), layout = prepare(g.shape, [g, gv, x0_in, noise_in], [gx, gn])
        if (not need_tables or noise is not None) and channels_last_planes(layout, n, rows) is not None:
            layout = MEMORY_ORDER
        tile = tiling(noising, n, rows, run_alignment(elem_offset, units, units_aligned), paired(g, layout),
                      not layout.contiguous)
        partials = torch.empty((*tile.grid, 4), dtype=torch.float32, device=g.device) if need_tables else None
        s_lo, s_hi, s_ptr, from_ptr = seed_args(seed_tensor, seed_lo, seed_hi, t_rows)
        kernel, layout_args, layout_kw = entry_point(layout, noising.noising_bwd_kernel,
                                                     noising.noising_bwd_contiguous_kernel)
        with device_guard(g):
            launcher(kernel)[tile.grid](
                g_, gv_ if gv_ is not None else g_, x0_ if x0_ is not None else g_,
                noise_ if noise_ is not None else g_, gx_ if gx_ is not None else g_, gn_ if gn_ is not None else g_,
                partials if partials is not None else a,
                t_rows, a, b, c if c is not None else a, d if d is not None else b, checked_steps(a.numel()),
                *tile.row_args, elem_offset, t_rows if units is None else units,
                s_lo, s_hi, s_ptr, seeding.as_int32(stream), step, offset_strength, *layout_args, **layout_kw,
                HAS_NOISE=noise is not None, HAS_GV=gv is not None,
                NEED_GX=gx is not None, NEED_GN=gn is not None, NEED_PARTIALS=need_tables,
                HAS_OFFSET=offset_strength != 0.0 and noise is None, SEED_FROM_PTR=from_ptr, BLOCK=tile.block,
                SOFT_BF16=interpreter_active(), MATH=math_mode(g.device), PAIRED=paired(g, layout),
                UNITS=row_mode(tile, elem_offset, units_mode(units, units_aligned, units_narrow)),
                **launch_options(noising, g.device),
            )
        copy_back([(gx, gx_), (gn, gn_)])
        if need_tables:
            sums = partials.view(rows, tile.chunks, 4).sum(dim=1)
    return gx, gn, sums


def channels_last_draw(x0, out, eps, v, planes: Planes, t_rows, a, b, c, d, seed_tensor, seed_lo, seed_hi, stream,
                        step, offset_strength, elem_offset, check_t, perturbation=0.0) -> bool:
    """Launch the channels-last drawn-noise kernel; False, launching nothing, where its tile does not
    apply (channels_last_tiling)."""
    from ..kernels import noising

    tile = channels_last_tiling(noising, planes, x0.element_size(), elem_offset)
    if tile is None:
        return False
    C = planes.channels
    s_lo, s_hi, s_ptr, from_ptr = seed_args(seed_tensor, seed_lo, seed_hi, t_rows)
    with device_guard(x0):
        launcher(noising.noising_fwd_channels_last_kernel)[tile.grid](
            x0, out, eps if eps is not None else out, v if v is not None else out,
            t_rows, int(t_rows.numel() > 1), a, b, c if c is not None else a, d if d is not None else b,
            checked_steps(a.numel()),
            planes.plane // 4, tile.chunks, tile.divisor,
            s_lo, s_hi, s_ptr, seeding.as_int32(stream), step, offset_strength, perturbation,
            C=C, WRITE_NOISE=eps is not None, WRITE_V=v is not None, HAS_OFFSET=offset_strength != 0.0,
            SEED_FROM_PTR=from_ptr, BLOCK_J=tile.block // C, SOFT_BF16=interpreter_active(), MATH=math_mode(x0.device),
            PERTURB=perturbation != 0.0, **launch_options(noising, x0.device, check_t=check_t),
        )
    return True


def q_sample_forward(x0, t_rows, sqrt_ab, sqrt_1m_ab, noise=None, *, seed=0, stream: int = 0, step: int = 0,
                     write_noise: bool = False, elem_offset: int = 0):
    """(x_t, ε or None) for an int seed or a 1-element int64 device tensor: the common direct call."""
    seed_tensor, lo, hi = seed_parts(seed)
    out, eps, _ = forward(x0, t_rows, sqrt_ab, sqrt_1m_ab, None, None, noise, seed_tensor, lo, hi, stream,
                               step, 0.0, write_noise, False, elem_offset)
    return out, (eps if write_noise and noise is None else None)
