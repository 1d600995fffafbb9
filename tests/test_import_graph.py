"""The package's imports, read with ast: no two modules import each other (directly or round a circle, type-only
imports included), and no module imports another module's underscore names (what is shared is public where it
is defined)."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict:
    """Module name -> (path, its package), for diffusion_kernels/ and kernels/ (shipped as
    diffusion_kernels.kernels)."""
    found = {}
    for path in sorted((ROOT / "diffusion_kernels").rglob("*.py")) + sorted((ROOT / "kernels").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[0] == "kernels":
            parts = ["diffusion_kernels", *parts]
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, ".".join(parts if is_package else parts[:-1]))
    return found


MODULES = _modules()


def _imports(module: str, top_level_only: bool):
    """(target module, imported name or None) of each import in ``module``; top level: the module's own
    statements and those of its top-level if blocks (TYPE_CHECKING), not imports made inside functions."""
    path, package = MODULES[module]
    tree = ast.parse(path.read_text())
    if top_level_only:
        nodes = [n for top in tree.body for n in [top, *(top.body if isinstance(top, ast.If) else [])]]
    else:
        nodes = list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
            for alias in node.names:
                if f"{target}.{alias.name}" in MODULES:
                    yield f"{target}.{alias.name}", None
                elif target in MODULES:
                    yield target, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    yield alias.name, None


def _circles(edges: dict) -> list:
    """The strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, groups, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in edges:
        if v not in index:
            visit(v)
    return groups


def test_no_modules_import_each_other_round_a_circle():
    edges = {m: {target for target, _ in _imports(m, top_level_only=True) if target != m} for m in MODULES}
    # the walk sees the package's imports: absolute, relative, from a subpackage, in a kernel
    assert "diffusion_kernels.noising.handle" in edges["diffusion_kernels.noising.entry"]
    assert "diffusion_kernels.launch.tiling" in edges["diffusion_kernels.launch.layout"]
    assert "diffusion_kernels.dispatch" in edges["diffusion_kernels.noising.launcher"]
    assert "diffusion_kernels.kernels.tiles" in edges["diffusion_kernels.kernels.noising"]
    assert _circles(edges) == []


def test_a_circle_is_found_when_there_is_one():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_another_modules_underscore_names(module):
    private = [(target, name) for target, name in _imports(module, top_level_only=False)
               if name and name.startswith("_") and not name.startswith("__") and target != module]
    assert private == []


@pytest.mark.parametrize("op", ["noising", "loss", "trajectory", "sampling"])
def test_each_launcher_reaches_its_kernels_by_an_ordinary_import(op):
    """An editor's go-to-definition and the import graph follow a launcher to its kernels."""
    targets = {target for target, _ in _imports(f"diffusion_kernels.{op}.launcher", top_level_only=False)}
    assert f"diffusion_kernels.kernels.{op}" in targets


BACKEND_NAMES = {"triton", "cpu", "reference"}


def _backend_tests(module: str) -> list:
    """The lines of ``module`` that compare a variable with a backend's name."""
    path, _ = MODULES[module]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            names = {o.value for o in operands if isinstance(o, ast.Constant)}
            names |= {e.value for o in operands if isinstance(o, (ast.Tuple, ast.Set, ast.List))
                      for e in o.elts if isinstance(e, ast.Constant)}
            if names & BACKEND_NAMES and any(isinstance(o, ast.Name) for o in operands):
                found.append(node.lineno)
    return found


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "diffusion_kernels.dispatch"))
def test_only_the_dispatch_point_tests_a_backend_by_name(module):
    assert _backend_tests(module) == []


def test_a_backend_test_is_found_where_there_is_one():
    assert _backend_tests("diffusion_kernels.dispatch")
