"""The command line: validation report, exit status, one-line errors."""
import subprocess
import sys


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
