"""The command line: validation report, exit status, one-line errors."""
import subprocess
import sys
import pytest


from diffusion_kernels import cli


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
    assert err.startswith("diffusion-kernels: error: unknown dtype 'int8'") and "\n" not in err


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

    from diffusion_kernels import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" or
                        name == "scipy" else real(name, *a))
    args = [command] + (["--out", "unused"] if command == "figures" else [])
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"pip install 'diffusion-kernels[{extra}]'" in err[0]
