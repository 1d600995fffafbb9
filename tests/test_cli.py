"""The command line: validation report, exit status, one-line errors."""
import subprocess
from pathlib import Path
import sys
import pytest


from diffusion_kernels import cli, cpu_noise


def test_validate_passes_and_reports(capsys, device):
    status = cli.main(["validate", "--device", str(device), "--numel", "4096", "--quiet"])
    out = capsys.readouterr().out
    assert status == 0, out
    for needle in ("device :", "backend: triton", "given noise, float32", "noise KS vs N(0,1)", "result : PASS"):
        assert needle in out


def test_default_command_is_validate(capsys, device):
    assert cli.main(["--device", str(device), "--numel", "1024", "--quiet", "--dtype", "fp32"]) == 0
    assert "result : PASS" in capsys.readouterr().out


def test_user_mistake_is_one_line_with_status_2(capsys):
    assert cli.main(["validate", "--dtype", "int8", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("diffusion-kernels: error: --dtype: unknown value 'int8'") and "\n" not in err


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "diffusion_kernels", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "validate" in out


def test_failed_check_gives_status_1(monkeypatch, capsys, device):
    from diffusion_kernels import validate

    monkeypatch.setattr(validate, "ALPHA", 1.1)  # every p-value is below: the statistical checks must fail
    assert cli.main(["validate", "--device", str(device), "--numel", "1024", "--quiet", "--dtype", "fp32"]) == 1
    assert "result : FAIL" in capsys.readouterr().out


@pytest.mark.parametrize("command,extra", [("validate", "validate"), ("figures", "figures"), ("bench", "bench")])
def test_a_missing_extra_is_named_in_one_line(monkeypatch, capsys, command, extra):
    import importlib.util

    from diffusion_kernels import cli, cpu_noise

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" or
                        name == "scipy" else real(name, *a))
    args = [command] + (["--out", "unused"] if command == "figures" else [])
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    from diffusion_kernels.install import extra_line

    # The line for how this copy is installed: here an editable checkout, whose folder pip takes.
    line = extra_line(extra)
    assert len(err) == 1 and err[0].endswith(line), err
    assert line.startswith("pip install ") and f"[{extra}]'" in line
    root = line.split("'")[1][: -len(f"[{extra}]")]
    assert (Path(root) / "pyproject.toml").is_file(), line


USAGE_ERRORS = [
    (["valdate"], "unknown command 'valdate'; did you mean 'validate'?"),
    (["bench", "--sizes", "0"], "--sizes: 0 is outside"),
    (["bench", "--sizes", "16M,3Q"], "--sizes: expected a count"),
    (["bench", "--modes", "xt,fast"], "--modes: unknown value 'fast'"),
    (["bench", "--layout", "channels_last", "--sizes", "1000"], "not a multiple of 16"),
    (["bench", "--num-warps", "3"], "NUM_WARPS must be a power of two"),
    (["validate", "--numel", "12"], "--numel: 12 is outside"),
    (["validate", "--steps", "10,1000"], "--steps: 1000 is outside [0, 999]"),
    (["validate", "--device", "mps"], "unknown device 'mps'"),
    (["figures", "--images", "no/such/folder"], "no such image file or folder"),
]


@pytest.mark.parametrize("argv,message", USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_usage_errors_are_one_line_before_torch_is_imported(argv, message):
    script = ("import sys; from diffusion_kernels import cli; status = cli.main(sys.argv[1:]); "
              "heavy = [m for m in ('torch', 'triton', 'numpy') if m in sys.modules]; "
              "print(status, heavy)")
    run = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True)
    assert run.stdout.split() == ["2", "[]"], run.stdout + run.stderr
    err = run.stderr.strip()
    assert "\n" not in err and err.startswith("diffusion-kernels: error: ") and message in err, err


def _fastest(cmd, repeats=3):
    import time

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def test_a_usage_error_costs_little_more_than_starting_python():
    # Relative to the interpreter's own start on this machine, so a loaded machine does not fail it;
    # importing torch alone costs several times the budget.
    baseline = _fastest([sys.executable, "-c", "pass"])
    mistake = _fastest([sys.executable, "-m", "diffusion_kernels", "bench", "--sizes", "0"])
    assert mistake - baseline < 0.5, f"a usage error took {mistake:.2f} s against {baseline:.2f} s for python"


def test_list_options_take_commas_repeats_and_suffixes():
    commas = cli.parse(["bench", "--sizes", "64K,1M", "--dtype", "fp32,bf16", "--modes", "xt,backward"])
    repeats = cli.parse(["bench", "--sizes", "65536", "--sizes", "1048576", "--dtype", "fp32", "--dtype", "bf16",
                         "--modes", "xt", "--modes", "backward"])
    spaced = cli.parse(["bench", "--sizes", "64k", "1m", "--dtype", "fp32", "bf16", "--modes", "xt", "backward"])
    for args in (commas, repeats, spaced):
        assert (args.sizes, args.dtype, args.modes) == ([65536, 1 << 20], ["fp32", "bf16"], ["xt", "backward"])
    assert cli.parse(["validate", "--numel", "16M", "--steps", "10,999"]).numel == 1 << 24


def test_validate_steps_bound_is_the_schedule_length():
    from diffusion_kernels import NoiseSchedule

    assert cli.VALIDATE_T == NoiseSchedule.linear().T



def test_version_prints_the_packages_version(capsys):
    import diffusion_kernels

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"diffusion-kernels {diffusion_kernels.__version__}"


@pytest.mark.skipif(not cpu_noise.available(), reason="the cpu backend needs numba")
def test_validate_runs_on_the_cpu_backend(capsys):
    assert cli.main(["validate", "--device", "cpu", "--backend", "cpu", "--numel", "4096", "--dtype", "fp32",
                     "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "backend: cpu" in out and "result : PASS" in out


def test_bench_defaults_on_cpu_are_the_minute_sweep_into_its_own_folder():
    from diffusion_kernels.bench import spec

    args = cli.parse(["bench"])
    assert args.out == spec.DEFAULT_OUT == "bench-results"
    assert "fused" not in spec.CPU_DEFAULTS["providers"] and "compile" not in spec.CPU_DEFAULTS["providers"]
    cases = len(spec.CPU_SIZES) * len(spec.CPU_DEFAULTS["dtypes"]) * (
        len(spec.CPU_DEFAULTS["modes"]) * (len(spec.CPU_DEFAULTS["providers"]) - 1) + 1)
    assert spec.estimate_seconds(cases, args.reps, cpu=True) < 90
