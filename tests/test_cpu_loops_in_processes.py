"""The CPU loops where a training job runs them: in DataLoader workers and bare children forked after a
threaded call or an ordinary parallel torch op, and from an install that can write no cache beside itself
or in the user's home. Each case runs in its own process under a timeout, so a hang fails instead of
stalling the suite."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from diffusion_kernels import cpu_noise

pytestmark = pytest.mark.skipif(not cpu_noise.available(), reason="the CPU loops need numba (the [cpu] extra)")

# The package as imported: the source tree (whose kernels/ ships as diffusion_kernels.kernels), or an install.
PACKAGE = Path(cpu_noise.__file__).resolve().parent
KERNELS = PACKAGE / "kernels" if (PACKAGE / "kernels").is_dir() else PACKAGE.parent / "kernels"
TIMEOUT = 240  # seconds: a cold numba compile of the loops takes ~15-30 s on two cores; a hang takes forever

# 16×4×32×32 = 65,536 elements: at cpu_noise.SERIAL_BELOW, so the parent's call runs on threads.
PRELUDE = """
import os, sys, torch
import diffusion_kernels as dk
S = dk.NoiseSchedule.linear()
x = torch.randn(16, 4, 32, 32, generator=torch.Generator().manual_seed(0))
t = torch.arange(16) * 60
def noised():
    return dk.q_sample(x, t, S, seed=7, backend="cpu")
"""


def _run(script: str, env=None, cwd=None) -> subprocess.CompletedProcess:
    merged = {**os.environ, "DIFFUSION_KERNELS_QUIET": "1", **(env or {})}
    try:
        return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(script)], capture_output=True,
                              text=True, timeout=TIMEOUT, env=merged, cwd=cwd)
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(f"the process hung for {TIMEOUT} s:\n{timeout.stderr}")


def _passed(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_forking_dataloader_noises_in_its_workers():
    out = _passed(_run("""
        expected = noised()  # threaded, in the parent, before the workers fork
        torch.randn(256, 256) @ torch.randn(256, 256)
        loader = torch.utils.data.DataLoader(list(x), batch_size=16, num_workers=2, timeout=120,
                                             multiprocessing_context="fork", collate_fn=lambda b: noised())
        batches = list(loader)
        print(len(batches), all(torch.equal(b, expected) for b in batches))
    """))
    assert out.split() == ["1", "True"]


@pytest.mark.parametrize("before", ["threaded_call", "torch_parallel_op", "nothing"])
@pytest.mark.parametrize("call", ["float32", "bfloat16_with_v"])
def test_a_bare_fork_noises_in_the_child(before, call):
    # The child sends its bytes back: it runs no parallel torch op of its own, which GNU OpenMP would hang; the
    # call's own conversions and formulas (bfloat16 I/O, the v-target's reference formulas) run in it.
    out = _passed(_run(f"""
        xb = x.bfloat16()
        def noised_in(kind):
            if kind == "float32":
                return noised().numpy().tobytes()
            x_t, v = dk.q_sample(xb, t, S, seed=7, return_v=True, backend="cpu")
            return x_t.view(torch.int16).numpy().tobytes() + v.view(torch.int16).numpy().tobytes()
        expected = noised_in("{call}")
        if "{before}" == "torch_parallel_op":
            torch.randn(512, 512) @ torch.randn(512, 512)
        elif "{before}" == "threaded_call":
            dk.q_sample(torch.randn(64, 4, 32, 32), 5, S, seed=1, backend="cpu")
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, noised_in("{call}"))
            os._exit(0)
        os.close(w)
        data = b"".join(iter(lambda: os.read(r, 1 << 16), b""))
        _, status = os.waitpid(pid, 0)
        print(status, data == expected)
    """))
    assert out.split() == ["0", "True"]


def _read_only_install(tmp_path: Path) -> Path:
    """A copy of the package where numba can cache neither beside the code nor in the user's cache: each
    ``__pycache__`` folder is a plain file (as unwritable to a root process as to anyone)."""
    root = tmp_path / "site"
    shutil.copytree(PACKAGE, root / "diffusion_kernels", ignore=shutil.ignore_patterns("__pycache__"))
    if not (root / "diffusion_kernels" / "kernels").is_dir():
        shutil.copytree(KERNELS, root / "diffusion_kernels" / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in [root / "diffusion_kernels", *(root / "diffusion_kernels").rglob("*")]:
        if folder.is_dir():
            (folder / "__pycache__").write_text("not a folder")
    return root


@pytest.mark.parametrize("temporary_writable", [True, False])
def test_a_read_only_install_falls_back_with_one_line(tmp_path, temporary_writable):
    root = _read_only_install(tmp_path)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, so no folder can be made below it")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    if not temporary_writable:  # the fallback folder's name taken by a file
        (tmp / f"diffusion-kernels-numba-{os.getuid()}").write_text("not a folder")
    env = {"PYTHONPATH": str(root), "HOME": str(blocked / "home"), "XDG_CACHE_HOME": str(blocked / "cache"),
           "TMPDIR": str(tmp), "NUMBA_CACHE_DIR": "", "PYTHONDONTWRITEBYTECODE": "1"}
    result = _run("""
        assert dk.__file__.startswith(os.environ["PYTHONPATH"]), dk.__file__
        print(noised().numpy().tobytes().hex())
    """, env=env, cwd=tmp_path)
    import torch

    import diffusion_kernels as dk

    x = torch.randn(16, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = dk.q_sample(x, torch.arange(16) * 60, dk.NoiseSchedule.linear(), seed=7, backend="cpu")
    assert _passed(result).strip() == expected.numpy().tobytes().hex()
    notices = [line for line in result.stderr.splitlines() if line.startswith("diffusion-kernels:")]
    assert len(notices) == 1, result.stderr
    if temporary_writable:
        assert str(tmp) in notices[0]
        assert any(tmp.rglob("*.nbi")), "the loops were not cached in the temporary folder"
    else:
        assert "no cache" in notices[0]
