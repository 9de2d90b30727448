"""The package is a one-way house: each part of vcc imports only the parts below it.

Every module of ``vcc/`` is read with ``ast`` (imports inside functions and under
``TYPE_CHECKING`` count too) and every import of a vcc module is checked against LAYERS, the one
table of the layering (README's tour shows it). A failure names the file and line.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top. A module may import modules of its own layer and of the layers below it.
# Within a layer the parts are peers; `GROUND_RULES` pins the ground floor further.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("ground", ("vcc", "vcc.errors", "vcc.ir")),
    ("frontends", ("vcc.frontends",)),
    ("passes", ("vcc.passes",)),
    ("runtime", ("vcc.runtime",)),
    ("calib", ("vcc.calib",)),
    ("reports", ("vcc.reports",)),
    ("driver", ("vcc.driver",)),
]
# the ground's parts, and what of vcc each may import (besides itself)
GROUND_RULES = {"vcc": (), "vcc.errors": (), "vcc.ir": ("vcc.errors",)}
# modules nothing inside vcc may import
ENTRY_POINTS = ("vcc.driver.cli",)


def _owner(module: str, parts) -> str | None:
    """The longest listed part that `module` is, or lies inside."""
    best = None
    for part in parts:
        inside = module.startswith(part + ".") and part != "vcc"  # the root package is only itself
        if (module == part or inside) and (best is None or len(part) > len(best)):
            best = part
    return best


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def vcc_imports(path: Path, root: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported vcc module, line) for every import in the file, at any depth."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                found.append((sub if sub in known else mod, node.lineno))
    return [(m, line) for m, line in found if m == "vcc" or m.startswith("vcc.")]


def scan(root: Path) -> dict[str, list[tuple[str, int]]]:
    """module -> its vcc imports, for every .py under root/vcc."""
    files = sorted((root / "vcc").rglob("*.py"))
    known = {module_name(p, root) for p in files}
    return {module_name(p, root): vcc_imports(p, root, known) for p in files}


def layer_violations(root: Path) -> list[str]:
    rank = {part: i for i, (_, parts) in enumerate(LAYERS) for part in parts}
    layer_name = {part: name for name, parts in LAYERS for part in parts}
    files = {module_name(p, root): p for p in (root / "vcc").rglob("*.py")}
    problems = []
    for module, imports in scan(root).items():
        src = _owner(module, rank)
        where = files[module].relative_to(root)
        if src is None:
            problems.append(f"{where}: module {module} is in no layer of LAYERS")
            continue
        for target, line in imports:
            dst = _owner(target, rank)
            if dst is None:
                problems.append(f"{where}:{line}: imports {target}, which is in no layer of LAYERS")
            elif rank[dst] > rank[src]:
                problems.append(f"{where}:{line}: {module} ({layer_name[src]}) imports {target} "
                                f"({layer_name[dst]}), a layer above it")
            elif src in GROUND_RULES and dst != src and dst not in GROUND_RULES[src]:
                problems.append(f"{where}:{line}: {module} (ground) imports {target}; "
                                f"{src} may import only {list(GROUND_RULES[src]) or 'nothing of vcc'}")
            if target in ENTRY_POINTS:
                problems.append(f"{where}:{line}: {module} imports {target}, the command line, "
                                f"which nothing inside vcc may import")
    return problems


def package_cycles(root: Path) -> list[list[str]]:
    """Cycles in the graph of packages (every folder with an __init__.py is a node; a module
    counts as its folder), imports inside functions included."""
    imports = scan(root)
    packages = {m for m in imports if (root / Path(*m.split("."))).is_dir()}

    def pkg(m: str) -> str:
        while m not in packages:
            m = m.rpartition(".")[0]
        return m

    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in imports.items():
        for target, _ in targets:
            a, b = pkg(module), pkg(target)
            if a != b:
                graph[a].add(b)
    cycles, state = [], {}

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m, stack)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])
    return cycles


def test_no_import_runs_against_the_layers():
    problems = layer_violations(ROOT)
    assert not problems, "imports against the layers:\n  " + "\n  ".join(problems)


def test_package_graph_has_no_loop():
    cycles = package_cycles(ROOT)
    assert not cycles, "package import loops:\n  " + "\n  ".join(" -> ".join(c) for c in cycles)


def test_every_layer_part_exists():
    for _, parts in LAYERS:
        for part in parts:
            path = ROOT / Path(*part.split("."))
            assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), part


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


@pytest.mark.parametrize("where, text, expect", [
    ("vcc/ir/graph.py", "def f():\n    from vcc.passes import dce\n", "vcc/ir/graph.py:2: vcc.ir.graph (ground)"),
    ("vcc/runtime/lower.py", "from ..calib import thing\n", "vcc/runtime/lower.py:1: vcc.runtime.lower (runtime) imports vcc.calib"),
    ("vcc/passes/dce.py", "import vcc.driver.build\n", "a layer above it"),
    ("vcc/reports/x.py", "from vcc.driver import cli\n", "the command line"),
    ("vcc/ir/graph.py", "from vcc.frontends import onnx_import\n", "ground"),
    ("vcc/extra.py", "import vcc.errors\n", "module vcc.extra is in no layer"),
])
def test_checker_catches_a_planted_import(tmp_path, where, text, expect):
    tree = {f"vcc/{d}/__init__.py": "" for d in ("ir", "frontends", "passes", "runtime", "calib", "reports", "driver")}
    tree.update({"vcc/__init__.py": "", "vcc/errors.py": "", "vcc/driver/cli.py": "", "vcc/driver/build.py": "",
                 "vcc/passes/dce.py": "", "vcc/calib/thing.py": "", "vcc/frontends/onnx_import.py": ""})
    assert layer_violations(_plant(tmp_path, tree)) == []
    tree[where] = text
    problems = layer_violations(_plant(tmp_path, tree))
    assert any(expect in p for p in problems), problems


def test_checker_catches_a_planted_loop(tmp_path):
    tree = {"vcc/__init__.py": "", "vcc/runtime/__init__.py": "", "vcc/runtime/codegen.py": "from vcc.runtime.schedules import x\n",
            "vcc/runtime/schedules/__init__.py": "", "vcc/runtime/schedules/x.py": "def f():\n    import vcc.runtime.codegen\n"}
    cycles = package_cycles(_plant(tmp_path, tree))
    assert cycles == [["vcc.runtime", "vcc.runtime.schedules", "vcc.runtime"]]
