"""The public modules type-check under mypy --strict (pyproject.toml's [tool.mypy]), and so do a user's training
lines that use them (tests/typed_user.py): the package ships py.typed, so its annotations reach a user's checker."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_public_modules_and_a_users_lines_pass_mypy_strict():
    pytest.importorskip("mypy", reason="mypy is a test dependency (pip install -e .[test])")
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml's mypy files needs Python 3.11+")
    files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    # One run for both (a cold mypy takes ~20 s); strict includes --warn-unused-ignores, which the user's one
    # ignore needs to be used: proof that the annotations were read.
    run = subprocess.run([sys.executable, "-m", "mypy", *files, "tests/typed_user.py"], capture_output=True,
                         text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
