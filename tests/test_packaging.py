"""The wheel as built ships every module of the source tree (kernels/ as diffusion_kernels.kernels),
and declares only torch, triton and numpy as requirements."""
import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(out), str(ROOT)], capture_output=True, text=True)
    if result.returncode != 0 and "No module named pip" in result.stderr:
        pytest.skip("pip is not installed in this environment")
    assert result.returncode == 0, result.stderr
    (path,) = out.glob("diffusion_kernels-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_holds_every_source_module(wheel):
    expected = {f"diffusion_kernels/{p.relative_to(ROOT / 'diffusion_kernels').as_posix()}"
                for p in (ROOT / "diffusion_kernels").rglob("*.py")}
    expected |= {f"diffusion_kernels/kernels/{p.name}" for p in (ROOT / "kernels").glob("*.py")}
    shipped = {name for name in wheel.namelist() if name.endswith(".py")}
    assert expected - shipped == set()
    assert "diffusion_kernels/integrations/diffusers.py" in shipped


def test_wheel_requires_only_the_framework_and_the_compiler(wheel):
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = [line.split(":", 1)[1].strip() for line in wheel.read(metadata).decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    names = {r.split(";")[0].split(">")[0].split("<")[0].split("=")[0].split("!")[0].strip() for r in requires}
    assert names == {"torch", "triton", "numpy"}
