"""The layout's promises (docs/architecture.md), checked on the import graph.

- No import cycles among errbound's and mpi_collectives' modules (every import statement
  counts, those inside functions too).
- The core, the codecs and the stages import no integration, no command-line module and
  nothing of mpi_collectives; the integrations import no command-line module.
- mpi_collectives uses errbound's public API only: ``errbound`` and ``errbound.quantized``.
- No module reaches into another module's private (underscore) names.
- ``import errbound`` loads the core only: no codec, no integration, no numba, h5py or zfpy.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("errbound", "mpi_collectives")
LAYERS_BELOW_INTEGRATIONS = ("errbound.codecs", "errbound.stages")
INTEGRATION_PREFIXES = ("errbound.integrations", "errbound.cli", "errbound.__main__")
# the one core module that names integrations, by string, to open them on first use
HOOKS = "errbound._hooks"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


MODULES = modules()


def _resolve(name: str, node: ast.ImportFrom | ast.Import, alias: ast.alias | None, is_package: bool) -> list[str]:
    """The modules an import statement names (for ``from X import y``: X.y where that is a
    module, else X)."""
    if isinstance(node, ast.Import):
        return [alias.name]
    if node.level:
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]


def imports_of(name: str) -> list[tuple[str, ast.AST]]:
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            out += [(t, node) for t in _resolve(name, node, None, path.name == "__init__.py")]
    return out


def graph() -> dict[str, set[str]]:
    edges = {}
    for name in MODULES:
        targets = set()
        for target, _ in imports_of(name):
            # importing a.b.c runs a and a.b too; count the deepest module of ours it names
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                targets.add(target)
        edges[name] = targets
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan). A package's
    ``__init__`` importing its own submodules is not a cycle of the layout (importing a
    submodule runs its package first by definition), so those edges are left out."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def is_parent(a: str, b: str) -> bool:
        return b.startswith(a + ".")

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if is_parent(w, v):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_there_are_no_import_cycles():
    assert cycles(graph()) == []


def _in(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def core_modules() -> list[str]:
    return [m for m in MODULES if m.startswith("errbound") and not _in(m, INTEGRATION_PREFIXES) and m != HOOKS]


@pytest.mark.parametrize("name", core_modules())
def test_core_codecs_and_stages_import_no_integration(name):
    bad = [
        t
        for t, _ in imports_of(name)
        if _in(t, (*INTEGRATION_PREFIXES, "mpi_collectives", "h5py", "numcodecs", "zarr"))
    ]
    assert not bad, f"{name} imports {bad}"


@pytest.mark.parametrize("name", [m for m in MODULES if _in(m, ("errbound.integrations",))])
def test_integrations_import_no_command_line_module(name):
    bad = [t for t, _ in imports_of(name) if _in(t, ("errbound.cli", "mpi_collectives"))]
    assert not bad, f"{name} imports {bad}"


@pytest.mark.parametrize("name", [m for m in MODULES if m.startswith("mpi_collectives")])
def test_mpi_collectives_uses_errbound_public_api_only(name):
    bad = [t for t, _ in imports_of(name) if t.startswith("errbound") and t not in ("errbound", "errbound.quantized")]
    assert not bad, f"{name} imports {bad}"


def private_uses(path: Path) -> list[str]:
    """``from m import _x`` and ``m._x`` where m is a module imported by name."""
    tree = ast.parse(path.read_text())
    modules_here, bad = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                # a package's own private submodule (from . import _x) is its own business
                own = node.level and node.module is None
                if alias.name.startswith("_") and not alias.name.startswith("__") and not own:
                    bad.append(f"from {node.module} import {alias.name}")
                modules_here.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                modules_here.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules_here
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            bad.append(f"{node.value.id}.{node.attr}")
    return bad


LIBRARY_FILES = sorted([*MODULES.values(), *(ROOT / "benchmarks").glob("*.py"), *(ROOT / "examples").glob("*.py")])


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_uses_another_modules_private_names(path):
    allowed = {"sys._getframe", "os._exit"}
    assert [u for u in private_uses(path) if u not in allowed] == []


def test_import_errbound_loads_the_core_only():
    code = (
        "import sys, json, errbound; print(json.dumps(sorted(m for m in sys.modules if m.startswith('errbound')"
        " or m.split('.')[0] in ('numba', 'h5py', 'zfpy', 'numcodecs', 'zarr', 'mpi4py', 'llvmlite'))))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    foreign = [m for m in loaded if not m.startswith("errbound")]
    assert foreign == [], f"import errbound loads {foreign}"
    assert not [m for m in loaded if _in(m, (*INTEGRATION_PREFIXES, "errbound.codecs.sz", "errbound.codecs.fz"))]


def test_public_sub_apis_are_aliases_of_the_integrations():
    import errbound.hdf5

    import errbound
    import errbound.integrations.hdf5

    assert errbound.hdf5 is errbound.integrations.hdf5
    assert errbound.numcodecs is sys.modules["errbound.integrations.numcodecs"]
    assert callable(errbound.tune) and errbound.tune.__module__ == "errbound.integrations.tune"
    assert callable(errbound.codecs) and "sz" in errbound.codecs()
