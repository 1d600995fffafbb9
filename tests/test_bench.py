"""The benchmark sweep runs end to end without a GPU and writes its record and plot."""
import json

import pytest
import torch

from diffusion_kernels import bench, cli


def test_bench_command_writes_record_and_plot(tmp_path, capsys, device):
    # Every mode and provider by name: on a CPU a plain bench runs only the CPU user's minute.
    status = cli.main(["bench", "--device", str(device), "--sizes", "1024", "--dtype", "bf16", "--quiet",
                       "--out", str(tmp_path), "--reps", "20", "--modes", ",".join(bench.MODES),
                       "--providers", ",".join(bench.PROVIDERS)])
    out = capsys.readouterr().out
    assert status == 0
    (json_path,) = tmp_path.glob("*.json")
    (png_path,) = tmp_path.glob("*.png")
    record = json.loads(json_path.read_text())
    env = record["environment"]
    assert {"device", "torch", "triton", "date"} <= set(env)
    rows = record["rows"]
    providers = {r["provider"] for r in rows}
    assert {"fused", "eager", "compile", "copy"} <= providers
    assert {r["mode"] for r in rows} == {"copy", *bench.MODES}
    for r in rows:
        if r["timed"]:
            assert r["gbps"] > 0 and r["of_copy"] > 0
    if device.type == "cpu":
        assert all(not r["timed"] for r in rows if r["provider"] == "fused")
        # On CPU the ratios are taken against the compiled CPU path, side by side with the others.
        from diffusion_kernels import cpu_noise

        if cpu_noise.available():
            ours = [r for r in rows if r["provider"] == "cpu"]
            assert {r["mode"] for r in ours} == set(bench.MODES) and all(r["timed"] for r in ours)
            assert all(r["speedup_of_fused"] is not None for r in rows if r["provider"] in ("eager", "diffusers"))
            assert all(r["host_us"] is not None for r in rows if r["timed"])
    assert record["loss_memory"][0]["noise_mse_held_bytes"] == 0
    assert record["loss_memory"][0]["stored_noise_held_bytes"] == 1024 * 2
    # A training step's kept tensors: the kernel path keeps neither ε nor the target for its backward.
    saved = {(r["mode"], r["provider"]): r["saved_bytes"] for r in rows if r["mode"] in bench.TRAINING_MODES}
    assert {p for _, p in saved} >= {"fused", "eager", "compile", "diffusers"}
    assert saved["train_eps", "fused"] < saved["train_eps", "eager"]
    assert saved["train_eps", "fused"] < saved["train_eps", "diffusers"]
    assert saved["train_flow", "fused"] <= saved["train_flow", "eager"]
    assert "held between noising and loss" in out and png_path.stat().st_size > 10_000


def test_bytes_per_mode():
    assert bench.PASSES == {"xt_eps": 3, "xt": 2, "given_noise": 3, "backward": 2, "step": 2, "trajectory": 2,
                            "loss": 1, "train_eps": 5, "train_flow": 7, "copy": 2}


def test_unknown_provider_is_a_one_line_error(capsys):
    assert cli.main(["bench", "--providers", "cudnn", "--quiet"]) == 2
    assert "--providers: unknown value 'cudnn'" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["float32"])
def test_loss_memory_counts_the_stored_noise(device, dtype):
    m = bench.memory_of_loss(device, 4096, bench.DTYPES[dtype])
    assert m["stored_noise_held_bytes"] == 4096 * 4 and m["noise_mse_held_bytes"] == 0


def test_sweep_reports_each_case_as_it_finishes(device):
    seen = []
    record = bench.run(device, sizes=(256, 512), dtypes=("float32",), modes=("given_noise",),
                       providers=("eager", "copy"), reps=5, progress=False, on_case=seen.append)
    assert [len(r["rows"]) for r in seen] == [2, 4]  # after each size: its copy and eager rows
    assert seen[-1]["rows"] == record["rows"] and record["loss_memory"]


def test_runs_of_one_device_and_day_add_up_to_one_record(tmp_path, device):
    for dtype in ("fp32", "bf16"):
        assert cli.main(["bench", "--device", str(device), "--sizes", "256", "--dtype", dtype, "--quiet",
                         "--modes", "given_noise", "--providers", "eager", "copy", "--out", str(tmp_path),
                         "--reps", "5"]) == 0
    (json_path,) = tmp_path.glob("*.json")
    record = json.loads(json_path.read_text())
    assert {(r["dtype"], r["provider"]) for r in record["rows"]} == {
        (d, p) for d in ("float32", "bfloat16") for p in ("eager", "copy")}
    assert {m["dtype"] for m in record["loss_memory"]} == {"float32", "bfloat16"}


def test_merge_replaces_remeasured_rows_and_keeps_the_rest():
    def row(provider, dtype, ms):
        return {"provider": provider, "mode": "xt", "dtype": dtype, "numel": 1024, "median_ms": ms}

    old = {"sizes": [1024], "rows": [row("fused", "float32", 1.0), row("fused", "bfloat16", 2.0)],
           "loss_memory": [{"dtype": "float32"}]}
    new = {"environment": {"device": "d"}, "sizes": [1024], "rows": [row("fused", "bfloat16", 3.0)],
           "loss_memory": []}
    merged = bench.merge(old, new)
    assert sorted((r["dtype"], r["median_ms"]) for r in merged["rows"]) == [("bfloat16", 3.0), ("float32", 1.0)]
    assert merged["loss_memory"] == [{"dtype": "float32"}] and merged["environment"] == {"device": "d"}


@pytest.mark.parametrize("flags, expected, refused", [
    (["--block-quads", "128", "--num-warps", "8"], {"BLOCK_QUADS": 128, "NUM_WARPS": 8},
     [(["--block-quads-paired", "1"], "at least 2"), (["--num-warps", "3"], "power of two")]),
    # The launch's sizing (launch/tiling.py): the tuned tile at every size, one tile per program.
    (["--programs-per-sm", "0", "--tiles-per-program", "1"], {"PROGRAMS_PER_UNIT": 0, "MAX_TILES_PER_PROGRAM": 1},
     [(["--tiles-per-program", "3"], "power of two"), (["--programs-per-sm", "-1"], "--programs-per-sm")]),
    # A shrunk tile that keeps the tuned tile's warps and cuts each thread's elements.
    (["--sized-warps", "4"], {"SIZED_WARPS": 4},
     [(["--sized-warps", "3"], "power of two"), (["--sized-warps", "0"], "--sized-warps")]),
], ids=["kernel_tiles", "sizing", "sized_warps"])
def test_tile_overrides_are_recorded_and_kept_apart(tmp_path, capsys, device, flags, expected, refused):
    """Tile and sizing overrides are set where the kernels and launchers read them (bench.tiles reads them
    back) and recorded; another setting into the same folder, and invalid values, are refused."""
    defaults = bench.tiles()
    args = ["bench", "--device", str(device), "--sizes", "256", "--dtype", "fp32", "--quiet", "--modes", "xt",
            "--providers", "fused", "copy", "--out", str(tmp_path), "--reps", "5"]
    try:
        assert cli.main(args + flags) == 0
        (json_path,) = tmp_path.glob("*.json")
        assert json.loads(json_path.read_text())["environment"]["tiles"] == {**defaults, **expected}
        assert bench.tiles() == {**defaults, **expected}
        # Another setting into the same folder would mix two kernels' timings in one record: refused.
        assert cli.main(args + ["--block-quads", "256"]) == 2
        assert "other kernel tiles" in capsys.readouterr().err
        for bad, message in refused:
            assert cli.main(args + bad) == 2
            assert message in capsys.readouterr().err
    finally:
        bench.set_tiles(**defaults)
    assert bench.tiles() == defaults


def test_channels_last_sweep_keeps_its_rows_apart(tmp_path, device):
    """A channels_last run lands beside the contiguous one in the same record, row for row."""
    for layout in ("contiguous", "channels_last"):
        assert cli.main(["bench", "--device", str(device), "--sizes", "4096", "--dtype", "fp32", "--quiet",
                         "--modes", "xt", "--providers", "fused", "copy", "--layout", layout,
                         "--out", str(tmp_path), "--reps", "5"]) == 0
    (json_path,) = tmp_path.glob("*.json")
    rows = json.loads(json_path.read_text())["rows"]
    assert sorted((r["layout"], r["provider"]) for r in rows) == [
        ("channels_last", "copy"), ("channels_last", "fused"), ("contiguous", "copy"), ("contiguous", "fused")]


def test_batch_shapes():
    assert bench.batch_shape(1 << 24, "contiguous") == (4, 1 << 22)
    assert bench.batch_shape(4 * 4 * 64 * 64, "channels_last") == (4, 4, 64, 64)
    assert bench.batch_shape(1 << 26, "channels_last") == (4, 4, 2048, 2048)
    assert bench.batch_shape(16 * 1000, "channels_last") == (4, 4, 8, 125)


def test_channels_last_size_not_a_multiple_of_16_is_a_one_line_error(capsys):
    assert cli.main(["bench", "--sizes", "1000", "--layout", "channels_last", "--quiet"]) == 2
    assert "not a multiple of 16" in capsys.readouterr().err


def test_layout_choices_are_the_sweeps():
    (action,) = [a for a in cli.build_parser()._subparsers._group_actions[0].choices["bench"]._actions
                 if a.dest == "layout"]
    assert tuple(action.item_choices) == bench.LAYOUTS


def test_the_sharded_mode_times_both_recipes_on_a_real_process_group(tmp_path):
    """A 2-process gloo group: the broadcast recipe moves the full ε and t, the global-position one nothing."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("this torch build has no gloo backend to start the sharded mode's group with")
    from diffusion_kernels.bench import sharded

    record = sharded.run(torch.device("cpu"), sizes=(1 << 12,), dtypes=("float32",), reps=2)
    rows = {r["provider"]: r for r in record["rows"]}
    assert set(rows) == {"broadcast", "fused"} and record["environment"]["group"] == "gloo, 2 processes"
    n = rows["broadcast"]["numel"]
    assert rows["broadcast"]["moved_mb"] == pytest.approx((n * 4 + 2 * 8) / 1e6)
    assert rows["fused"]["moved_mb"] == 0 and rows["fused"]["full_eps_mb"] == 0
    assert all(r["ms"] > 0 for r in rows.values())
    json_path, png_path = sharded.write(record, tmp_path)
    assert json_path.exists() and png_path.stat().st_size > 0


def test_the_host_mode_times_every_case_beside_eager_and_writes_its_record(tmp_path, monkeypatch):
    """bench --modes host: the CPU loop, the GPU path's host work and a training step, each beside the eager
    recipe, interleaved; the GPU branch really runs the launcher (its launch a no-op) and is put back after."""
    from diffusion_kernels import dispatch
    from diffusion_kernels.bench import host
    from diffusion_kernels.noising import launcher

    if not dispatch.cpu_available():
        pytest.skip("the host mode's cpu case runs the compiled CPU loop (numba, the [cpu] extra)")
    launched = []
    real_launcher = launcher.launcher
    monkeypatch.setattr(host, "NoLaunch", type("Counted", (host.NoLaunch,), {
        "__getitem__": lambda self, grid: lambda *a, **k: launched.append(grid)}))
    record = host.run(rounds=2, calls=3)
    rows = {(r["case"], r["provider"]): r for r in record["rows"]}
    assert {case for case, _ in rows} == set(host.CASES)
    assert all(("eager" in {p for c, p in rows if c == case}) for case in host.CASES)
    assert all(r["us"] > 0 and r["vs_eager"] > 0 for r in rows.values())
    assert launched and all(len(grid) == 1 and grid[0] >= 1 for grid in launched)
    assert launcher.launcher is real_launcher and dispatch.select.__name__ == "select"
    json_path, png_path = host.write(record, tmp_path)
    assert json.loads(json_path.read_text())["rows"] == record["rows"] and png_path.stat().st_size > 0
