"""The README's CPU quickstart runs as written and prints what the README says it prints."""
import os
import subprocess
import sys

from readme_blocks import quickstart


def test_the_quickstart_prints_what_the_readme_shows():
    code, printed = quickstart()
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "DIFFUSION_KERNELS_QUIET": "1"})
    assert run.returncode == 0, run.stderr
    assert run.stdout == printed


def test_the_many_gpus_snippet_runs_two_ranks_that_draw_the_single_process_noise(tmp_path):
    import pytest
    import torch.distributed as dist

    from readme_blocks import sharded_snippet

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("this torch build has no gloo backend to start the snippet's process group with")
    script = tmp_path / "many_gpus.py"  # spawned ranks import the main module: it must be a file
    script.write_text(sharded_snippet())
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "DIFFUSION_KERNELS_QUIET": "1"})
    assert run.returncode == 0, run.stderr
    assert run.stdout == "both ranks drew the single-process noise\n"
