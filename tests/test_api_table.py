"""The README's API table cannot drift from the code: every exported name has a row, and every row that
writes a signature writes the one inspect.signature gives (defaults included)."""
import inspect

import pytest
from api_table import render, table_rows

import diffusion_kernels as dk

ROWS = table_rows()


@pytest.mark.parametrize("name", dk.__all__)
def test_every_export_has_a_row_with_its_signature(name):
    obj = getattr(dk, name)
    if inspect.ismodule(obj):  # a module's row names it, or one of its functions (reference.q_sample, ...)
        assert any(key == name or key.startswith(name + ".") for key in ROWS), f"no row for {name}"
        return
    assert name in ROWS, f"the README's API table has no row for {name}"
    written = ROWS[name]
    if inspect.isfunction(obj):
        assert written == render(name, obj)
    elif "(" in written:  # a class called by users: its constructor's signature
        assert written == render(name, obj)


def test_a_changed_signature_fails_the_check():
    def q_sample(x0, t, schedule, noise=None, *, seed=None, extra=1):
        return x0

    assert render("q_sample", q_sample) != ROWS["q_sample"]


def test_the_table_names_nothing_that_is_not_exported():
    extra = [name for name in ROWS if name.split(".")[0] not in dk.__all__]
    assert not extra, f"rows for names that diffusion_kernels does not export: {extra}"
