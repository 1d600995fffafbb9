"""Tiles fitted to rows and GPUs: programs that run several consecutive tiles of a row, rows that fewer warps
make whole tiles, and the row modes (whole tiles, 32-bit counters and bounds) the launchers pick. Whatever
the tile, the noise, x_t, v and the loss's gradient come out bit for bit the same."""
import pytest
import torch


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("options", [{}, {"return_v": True, "offset_noise": 0.1, "input_perturbation": 0.2}],
                         ids=["plain", "v_offset_perturbed"])
@pytest.mark.parametrize("shape, mode, resident, tiles", [
    ((2, 4, 64, 64), "WHOLE_TILES", 1, 2), ((2, 4, 64, 64), "WHOLE_TILES", 0, 4),
    ((2, 3, 33, 31), "NARROW_ROWS", 1.5, 2), ((2, 3, 33, 31), "NARROW_ROWS", 0, 4)],
    ids=["whole_tiles-2", "whole_tiles-4", "masked-2", "masked-4"])
def test_programs_that_run_several_tiles_give_what_one_tile_per_program_gives(monkeypatch, device, dtype, options,
                                                                             resident, tiles, shape, mode):
    """On a GPU with programs to spare each program runs ``tiles`` consecutive tiles of its row (here forced
    on a 4-SM GPU), and x_t, ε and v come out bit for bit as with one tile each: rows of whole tiles, and
    rows of 3,069 elements (masked, neither starting nor ending on a quad), whose last program runs the
    tiles left (6 tiles per row: 2 programs of 4 tiles run 4 and 2; 3 programs of 2 tiles)."""
    import importlib

    import diffusion_kernels as dk
    from diffusion_kernels.noising import launcher as noising_launcher
    from diffusion_kernels.noising import plans

    tiling_module = importlib.import_module("diffusion_kernels.launch.tiling")
    schedule = dk.NoiseSchedule.linear()
    x0 = torch.randn(*shape).to(dtype).to(device)
    t = torch.tensor([7, 999], device=device)

    def noised():
        got = dk.q_sample(x0, t, schedule, seed=11, return_noise=True, backend="triton", **options)
        return got if isinstance(got, tuple) else (got,)

    expected = noised()
    launches = []
    monkeypatch.setattr(noising_launcher, "gpu_units", lambda device: 4)
    monkeypatch.setattr(noising_launcher, "grouping_units", lambda sms: sms)  # an NVIDIA GPU's
    monkeypatch.setattr(importlib.import_module("diffusion_kernels.launch.tiling"), "RESIDENT_PROGRAMS_PER_UNIT",
                        resident)
    monkeypatch.setattr(plans, "_PLANS", {})
    real = noising_launcher.forward_tiles
    monkeypatch.setattr(noising_launcher, "forward_tiles", lambda *args: launches.append(real(*args)) or launches[-1])
    noising_launcher._launch_settings.cache_clear()
    try:
        got = noised()
    finally:
        noising_launcher._launch_settings.cache_clear()
    (tile, row_mode), = launches
    assert tile.tiles == tiles and row_mode == getattr(tiling_module, mode)
    per_row = 4 if mode == "WHOLE_TILES" else 6  # tiles per row after sizing to 4 SMs
    assert tile.grid == (2 * -(-per_row // tiles),)
    assert len(got) == len(expected) and all(torch.equal(g, e) for g, e in zip(got, expected))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape, mode", [((2, 4, 64, 64), "WHOLE_TILES"), ((2, 3, 31, 33), "NARROW_ROWS")],
                         ids=["whole_tiles", "masked"])
def test_a_strided_view_whose_programs_run_several_tiles_draws_the_same(monkeypatch, device, dtype, shape, mode):
    """A transposed view (the general kernel, each element addressed from its coordinates) with up to 4 tiles
    per program on a forced 4-SM GPU: x_t and ε bit for bit as with one tile each."""
    import importlib

    import diffusion_kernels as dk
    from diffusion_kernels.noising import launcher as noising_launcher

    tiling_module = importlib.import_module("diffusion_kernels.launch.tiling")
    schedule = dk.NoiseSchedule.linear()
    x0 = torch.randn(*shape).to(dtype).to(device).transpose(-1, -2)
    assert not x0.is_contiguous()
    t = torch.tensor([7, 999], device=device)
    expected = dk.q_sample(x0, t, schedule, seed=11, return_noise=True, backend="triton")
    launches = []
    monkeypatch.setattr(noising_launcher, "gpu_units", lambda device: 4)
    monkeypatch.setattr(noising_launcher, "grouping_units", lambda sms: sms)
    monkeypatch.setattr(tiling_module, "RESIDENT_PROGRAMS_PER_UNIT", 0)
    real = noising_launcher.forward_tiles
    monkeypatch.setattr(noising_launcher, "forward_tiles", lambda *args: launches.append(real(*args)) or launches[-1])
    got = dk.q_sample(x0, t, schedule, seed=11, return_noise=True, backend="triton")
    (tile, row_mode), = launches
    assert tile.tiles > 1 and row_mode == getattr(tiling_module, mode)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


@pytest.mark.parametrize("global_shape, cut, mode, tiles", [
    ((2, 4, 64, 64), (slice(None), slice(None), slice(8, 56)), "WHOLE_RUNS", 2),
    ((2, 4, 64, 64), (slice(None), slice(None), slice(8, 55)), "NARROW_ALIGNED", 4),
    ((2, 3, 40, 37), (slice(None), slice(None), slice(5, 35)), "NARROW_ANY", 4)],
    ids=["quad_aligned_whole_tiles", "quad_aligned", "anywhere"])
def test_a_shards_runs_that_run_several_tiles_per_program_draw_the_same(monkeypatch, device, global_shape, cut,
                                                                        mode, tiles):
    """A shard's runs (frames cut from a global batch: runs that start on a quad, of whole tiles of the
    launch's 512-element tile (3,072 elements) or not (3,008), and runs that start anywhere) with up to 4
    tiles per program on a forced 16-SM GPU: whole-tile runs unmasked, each program running a divisor of a
    run's 6 tiles; the others masked, a run's last program running the tiles left. x_t and ε bit for bit as
    with one tile each."""
    import importlib

    import diffusion_kernels as dk
    from diffusion_kernels.noising import launcher as noising_launcher
    from diffusion_kernels.noising import plans

    tiling_module = importlib.import_module("diffusion_kernels.launch.tiling")
    schedule = dk.NoiseSchedule.linear()
    block = torch.randn(global_shape)[cut].contiguous().to(device)
    where = dict(global_shape=global_shape, global_offset=tuple(c.start or 0 for c in cut) + (0,))
    t = torch.tensor([7, 999], device=device)
    expected = dk.q_sample(block, t, schedule, seed=5, return_noise=True, backend="triton", **where)
    launches = []
    monkeypatch.setattr(noising_launcher, "gpu_units", lambda device: 16)
    monkeypatch.setattr(noising_launcher, "grouping_units", lambda sms: sms)
    monkeypatch.setattr(tiling_module, "RESIDENT_PROGRAMS_PER_UNIT", 0)
    monkeypatch.setattr(plans, "_PLANS", {})
    real = noising_launcher.forward_tiles
    monkeypatch.setattr(noising_launcher, "forward_tiles", lambda *args: launches.append(real(*args)) or launches[-1])
    noising_launcher._launch_settings.cache_clear()
    try:
        got = dk.q_sample(block, t, schedule, seed=5, return_noise=True, backend="triton", **where)
    finally:
        noising_launcher._launch_settings.cache_clear()
    (tile, row_mode), = launches
    modes = {"WHOLE_RUNS": tiling_module.WHOLE_RUNS, "NARROW_ALIGNED": tiling_module.NARROW_ALIGNED,
             "NARROW_ANY": tiling_module.UNITS_ANY + tiling_module.NARROW}
    assert row_mode == modes[mode] and tile.tiles == tiles
    assert 4 * tile.block == 512 or mode == "NARROW_ANY"
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rows_that_fewer_warps_make_whole_tiles_run_unmasked_and_draw_the_same(monkeypatch, device, dtype):
    """Rows of 768 elements (3·256) are not whole tiles of the launch's tile; on a GPU a quarter of it (one
    warp, each thread keeping its elements) is, so the rows run unmasked (WHOLE_TILES), with x_t and ε bit for
    bit the default tile's."""
    import diffusion_kernels as dk
    from diffusion_kernels.launch.tiling import WHOLE_TILES
    from diffusion_kernels.noising import launcher as noising_launcher
    from diffusion_kernels.noising import plans

    schedule = dk.NoiseSchedule.linear()
    x0 = torch.randn(2, 3, 16, 16).to(dtype).to(device)
    t = torch.tensor([7, 999], device=device)
    expected = dk.q_sample(x0, t, schedule, seed=3, return_noise=True, backend="triton")
    chosen = []
    real = noising_launcher.forward_tiles
    monkeypatch.setattr(noising_launcher, "gpu_units", lambda device: 1)
    monkeypatch.setattr(noising_launcher, "fewest_warps", lambda sms: 1)
    monkeypatch.setattr(noising_launcher, "forward_tiles", lambda *args: chosen.append(real(*args)) or chosen[-1])
    monkeypatch.setattr(plans, "_PLANS", {})
    noising_launcher._launch_settings.cache_clear()
    try:
        got = dk.q_sample(x0, t, schedule, seed=3, return_noise=True, backend="triton")
    finally:
        noising_launcher._launch_settings.cache_clear()
    (tile, mode), = chosen
    assert mode == WHOLE_TILES and tile.warps == 1 and 768 % (4 * tile.block) == 0
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_a_row_tile_is_fitted_only_where_it_makes_rows_whole():
    from diffusion_kernels.launch.tiling import (NARROW_ALIGNED, NO_UNITS, UNITS_ALIGNED, WHOLE_RUNS, row_mode,
                                                 row_tiling, whole_row_tile)

    tile = row_tiling(4, 25600, 1024, 0, 4)  # a 4×80×80 bf16 latent per row, the tuned bf16 tile
    fitted = whole_row_tile(tile, 0, NO_UNITS, 1)
    assert (fitted.block, fitted.warps, fitted.chunks) == (256, 1, 25)  # 25 tiles of 1,024 elements
    assert whole_row_tile(tile, 0, NO_UNITS, 2) is tile  # one AMD wavefront: 2,048 does not divide the row
    assert whole_row_tile(tile, 0, NO_UNITS, None) is tile  # no GPU
    assert whole_row_tile(tile, 0, UNITS_ALIGNED, 1) is tile  # a shard's runs with 64-bit counters stay masked
    runs = whole_row_tile(tile, 0, NARROW_ALIGNED, 1)  # a shard's aligned runs, quads below 2**32, fitted
    assert (runs.block, runs.warps) == (256, 1) and row_mode(runs, 0, NARROW_ALIGNED) == WHOLE_RUNS
    assert row_mode(tile, 0, NARROW_ALIGNED) == NARROW_ALIGNED
    assert whole_row_tile(tile, 16, NO_UNITS, 1) is tile  # rows that do not start at element 0
    whole = row_tiling(4, 16384, 1024, 0, 4)
    assert whole_row_tile(whole, 0, NO_UNITS, 1) is whole


def test_tiles_are_grouped_only_by_whole_divisors_of_a_row_and_with_programs_to_spare():
    from diffusion_kernels.launch.tiling import WHOLE_TILES, grouped_tiles, row_tiling

    tile = row_tiling(16, 16384, 1024, 0)  # 4 tiles per row, 64 in all
    assert grouped_tiles(tile, None, WHOLE_TILES).tiles == 1  # no GPU
    assert grouped_tiles(tile, 8, WHOLE_TILES).tiles == 2  # 32 programs: 4 per SM of 8; 16 would not be
    assert grouped_tiles(tile, 4, WHOLE_TILES).tiles == 4  # 16 programs, 4 per SM; never more than 4 tiles each
    assert grouped_tiles(tile, 1, WHOLE_TILES).tiles == 4
    assert grouped_tiles(tile, 16, WHOLE_TILES).tiles == 1
    odd = row_tiling(16, 12288, 1024, 0)  # 3 tiles per row: a program would cross into the next row
    assert grouped_tiles(odd, 1, WHOLE_TILES).tiles == 1
    grouped = grouped_tiles(tile, 4, WHOLE_TILES)
    assert grouped.chunks == 1 and grouped.grid == (16,) and grouped.block == tile.block


def test_masked_rows_group_tiles_only_in_the_narrow_modes_and_their_last_program_runs_the_rest():
    from diffusion_kernels.launch.tiling import (NARROW, NARROW_ROWS, NO_UNITS, UNITS_ALIGNED, UNITS_ANY,
                                                 grouped_tiles, row_tiling)

    rows = row_tiling(16, 70200, 1024, 0)  # a 13×60×90 video latent per row: 17.1 tiles' worth, 18 tiles
    assert rows.chunks == 18
    for mode in (NARROW_ROWS, UNITS_ALIGNED + NARROW, UNITS_ANY + NARROW):
        grouped = grouped_tiles(rows, 16, mode)  # 5 programs of 4 tiles per row: 80, at least 4 per SM of 16
        assert grouped.tiles == 4 and grouped.chunks == 5 and grouped.grid == (80,)
    assert grouped_tiles(rows, 30, NARROW_ROWS).tiles == 2  # 144 programs ≥ 4 per SM of 30; 80 would not be
    assert grouped_tiles(rows, 40, NARROW_ROWS).tiles == 1
    for mode in (NO_UNITS, UNITS_ANY):  # 64-bit rows keep one tile per program
        assert grouped_tiles(rows, 1, mode) is rows
    short = row_tiling(4096, 100, 1024, 2)  # one tile per row: nothing to group
    assert short.chunks == 1 and grouped_tiles(short, 1, NARROW_ROWS) is short
    straddling = row_tiling(64, 3 * 4096, 1024, 2)  # rows of 3 tiles' length straddle 4 tiles
    assert straddling.chunks == 4
    assert grouped_tiles(straddling, 20, NARROW_ROWS).tiles == 2  # 128 programs ≥ 4 per SM of 20; 64 would not be
    assert grouped_tiles(straddling, 1, NARROW_ROWS).tiles == 4


def test_rows_past_the_32_bit_bounds_take_no_narrow_mode():
    """A row's bounds are compared in 32 bits, as seen from a tile, only where a row holds at most
    NARROW_ROW_LEN elements (and the launch at most NARROW_ELEMENTS)."""
    from diffusion_kernels.launch.tiling import (NARROW_ELEMENTS, NARROW_ROW_LEN, NARROW_ROWS, NO_UNITS, row_mode,
                                                 row_tiling, takes_narrow)

    assert takes_narrow(NARROW_ELEMENTS, NARROW_ROW_LEN) and not takes_narrow(NARROW_ELEMENTS + 1, 8)
    assert not takes_narrow(NARROW_ROW_LEN + 1, NARROW_ROW_LEN + 1)
    assert row_mode(row_tiling(1, NARROW_ROW_LEN + 4, 1024, 4), 4, NO_UNITS) == NO_UNITS
    assert row_mode(row_tiling(3, NARROW_ROW_LEN, 1024, 4), 4, NO_UNITS) == NARROW_ROWS


def test_only_an_nvidia_gpu_groups_tiles(monkeypatch):
    """AMD's per-tile setup runs on its scalar unit: one tile per program there (tiling.grouping_units)."""
    import importlib

    import torch

    tiling_module = importlib.import_module("diffusion_kernels.launch.tiling")
    monkeypatch.setattr(torch.version, "hip", "6.4")
    assert tiling_module.grouping_units(304) is None
    monkeypatch.setattr(torch.version, "hip", None)
    assert tiling_module.grouping_units(304) == 304


def test_the_launchers_row_modes_are_the_kernels():
    """The modes the launchers pass as UNITS (launch.tiling) are the numbers kernels/tiles.py tests for."""
    import importlib

    from diffusion_kernels.kernels import tiles

    modes = importlib.import_module("diffusion_kernels.launch.tiling")
    assert (modes.NO_UNITS, modes.UNITS_ALIGNED, modes.UNITS_ANY, modes.WHOLE_TILES, modes.NARROW) == tuple(
        c.value for c in (tiles.NO_UNITS, tiles.UNITS_ALIGNED, tiles.UNITS_ANY, tiles.WHOLE_TILES, tiles.NARROW))
    assert tiles.NARROW_ALIGNED.value == modes.units_mode(object(), aligned=True, narrow=True)
    assert tiles.NARROW_ANY.value == modes.units_mode(object(), aligned=False, narrow=True)
    assert modes.NARROW_ROWS == modes.NO_UNITS + modes.NARROW


def test_a_shards_runs_of_whole_tiles_noise_differentiate_and_take_the_loss_as_masked_runs_do(monkeypatch,
                                                                                             device):
    """Runs of 3,072 elements (frames 8-55 of a 2×4×64×64 batch) on a 512-element tile are whole tiles: the
    forward, its backward, the ε loss forward and backward and the step-by-step trajectory take them unmasked
    (WHOLE_RUNS) and give what
    the interpreter's default tile gives them (masked runs): x_t, ε (offset noise at the runs' global rows
    included) and both gradients bit for bit, the loss to float32 rounding (its partial sums are added in
    another grouping)."""
    import sys

    import diffusion_kernels as dk
    from diffusion_kernels.loss import launcher as loss_launcher
    from diffusion_kernels.noising import launcher as noising_launcher
    from diffusion_kernels.noising import plans
    from diffusion_kernels.trajectory import launcher as trajectory_launcher

    tiling_module = sys.modules["diffusion_kernels.launch.tiling"]
    schedule = dk.NoiseSchedule.linear()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 64, 64, generator=g)[:, :, 8:56].contiguous().to(device)
    prediction = torch.randn(x.shape, generator=g).to(device)
    upstream = torch.randn(x.shape, generator=g).to(device)
    t = torch.tensor([7, 999], device=device)
    where = dict(global_shape=(2, 4, 64, 64), global_offset=(0, 0, 8, 0))

    def step():
        x0, pred = x.clone().requires_grad_(), prediction.clone().requires_grad_()
        x_t, eps = dk.q_sample(x0, t, schedule, seed=5, return_noise=True, offset_noise=0.1, backend="triton",
                               **where)
        _, handle = dk.q_sample(x, t, schedule, seed=5, return_noise="seed", offset_noise=0.1, backend="triton",
                                **where)
        loss = dk.diffusion_loss(pred, handle, reduction="sum", backend="triton")
        (loss + (x_t * upstream).sum()).backward()
        walked, _ = dk.forward_trajectory(x, schedule, 3, seed=4, backend="triton", **where)
        return x_t.detach(), eps, loss.detach(), x0.grad, pred.grad, walked

    expected = step()
    modes = []

    def recorded(real):
        return lambda *args, **kwargs: modes.append(real(*args, **kwargs)) or modes[-1]

    monkeypatch.setattr(tiling_module, "block_quads", lambda *args, **kwargs: 128)  # 512 elements a tile
    for module in (noising_launcher, loss_launcher, trajectory_launcher):
        monkeypatch.setattr(module, "row_mode", recorded(module.row_mode))
    monkeypatch.setattr(plans, "_PLANS", {})
    noising_launcher._launch_settings.cache_clear()
    try:
        got = step()
    finally:
        noising_launcher._launch_settings.cache_clear()
    # The forward, its backward, the loss forward and backward, the trajectory's steps.
    assert set(modes) == {tiling_module.WHOLE_RUNS} and len(modes) >= 5
    for name, a, b in zip(("x_t", "eps", "loss", "grad x0", "grad prediction", "trajectory"), got, expected):
        if name == "loss":
            torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
        else:
            assert torch.equal(a, b), name
