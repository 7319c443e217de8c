"""The code's imports follow the data's direction: no circle anywhere in the package (imports
inside functions included), lower layers never import higher ones, and inside
``ltbench/reproduce`` the cell schema is at the bottom, the experiments above the stages, and
reports read results through the schema without importing any experiment."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _modules(root: str = ROOT) -> dict:
    """{module name: path} of every .py file of ltbench and baselines."""
    out = {}
    for top in ("ltbench", "baselines"):
        for dirpath, dirnames, files in os.walk(os.path.join(root, top)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    name = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                    out[name.removesuffix(".__init__")] = path
    return out


EXTENSIONS = ("ltbench._C",)  # the compiled op library


def import_graph(modules: dict) -> dict:
    """{module: set of package modules it imports}, every import statement counted (module
    level or inside a function); ``from a.b import c`` depends on ``a.b.c`` when that is a
    module, else on ``a.b``."""
    graph = {}
    for name, path in modules.items():
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        targets = set()
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
        deps = set()
        for t in targets:
            if t in EXTENSIONS:
                continue  # compiled, imports nothing
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                deps.add(t)
        graph[name] = deps
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


GRAPH = import_graph(_modules())


def test_the_detector_sees_a_circle_hidden_in_a_function(tmp_path):
    """The check itself: two modules importing each other, one of them only inside a function."""
    pkg = tmp_path / "ltbench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from ltbench.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from ltbench import a\n    return a\n")
    assert cycles(import_graph(_modules(str(tmp_path)))) == [["ltbench.a", "ltbench.b"]]


def test_no_circle_in_the_package():
    assert cycles(GRAPH) == []


LOWER = ("ltbench.data", "ltbench.prior", "ltbench.method", "ltbench.eval", "ltbench.utils", "ltbench.ops")


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("layer", LOWER)
def test_lower_layers_never_import_higher_ones(layer):
    bad = {m: sorted(d for d in deps if any(_under(d, p) for p in ("ltbench.reproduce", "ltbench.cli", "baselines"))) for m, deps in GRAPH.items() if _under(m, layer)}
    assert not {m: d for m, d in bad.items() if d}


def test_ops_import_nothing_of_ltbench_but_themselves():
    bad = {m: sorted(d for d in deps if not _under(d, "ltbench.ops")) for m, deps in GRAPH.items() if _under(m, "ltbench.ops")}
    assert not {m: d for m, d in bad.items() if d}


def test_no_baseline_imports_another():
    bad = {m: sorted(d for d in deps if _under(d, "baselines")) for m, deps in GRAPH.items() if _under(m, "baselines")}
    assert not {m: d for m, d in bad.items() if d}


# inside reproduce: readers of results (schema at the bottom, reports) never import an
# experiment or the stages; the runner is imported only by the command line
R = "ltbench.reproduce."
READERS = ("rows", "presets", "schema", "figures", "report", "readings", "diagnostics_report", "benchtable", "provenance")
EXPERIMENTS = ("stages", "cells", "table1", "diagnostics", "refine_sweep", "calibrate", "reproducibility", "projection", "rehearsal", "__main__")


@pytest.mark.parametrize("reader", READERS)
def test_reports_read_results_through_the_schema_never_an_experiment(reader):
    assert R + reader in GRAPH, f"{R + reader} is gone: update the layering test"
    assert not sorted(d for d in GRAPH[R + reader] if d.removeprefix(R) in EXPERIMENTS)


def test_only_the_command_line_imports_the_runner():
    importers = sorted(m for m, deps in GRAPH.items() if R + "table1" in deps)
    assert importers == [R + "__main__"], importers


def test_the_runner_is_near_400_lines():
    with open(os.path.join(ROOT, "ltbench", "reproduce", "table1.py")) as f:
        assert len(f.read().splitlines()) <= 450
