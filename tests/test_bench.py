"""The benchmark sweep runs end to end without a GPU and writes its record and plot."""
import json

import pytest

from diffusion_kernels import bench, cli


def test_bench_command_writes_record_and_plot(tmp_path, capsys, device):
    status = cli.main(["bench", "--device", str(device), "--sizes", "1024", "--dtype", "bf16", "--quiet",
                       "--out", str(tmp_path), "--reps", "20"])
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
    assert record["loss_memory"][0]["noise_mse_held_bytes"] == 0
    assert record["loss_memory"][0]["stored_noise_held_bytes"] == 1024 * 2
    assert "held between noising and loss" in out and png_path.stat().st_size > 10_000


def test_bytes_per_mode():
    assert bench.PASSES == {"xt_eps": 3, "xt": 2, "given_noise": 3, "backward": 2, "copy": 2}


def test_unknown_provider_is_a_one_line_error(capsys):
    assert cli.main(["bench", "--providers", "cudnn", "--quiet"]) == 2
    assert "unknown provider 'cudnn'" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["float32"])
def test_loss_memory_counts_the_stored_noise(device, dtype):
    m = bench.memory_of_loss(device, 4096, bench.DTYPES[dtype])
    assert m["stored_noise_held_bytes"] == 4096 * 4 and m["noise_mse_held_bytes"] == 0
