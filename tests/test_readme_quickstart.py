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
