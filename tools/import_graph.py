"""Draw the import graph of ``src/mlfuse`` and report its circles and the imports that run back up.

Run ``python tools/import_graph.py`` (``--edges`` lists every edge). The graph is read with :mod:`ast`, so
nothing is imported: an edge is ``module -> imported module`` for every ``import``/``from ... import`` of an
``mlfuse`` module, kept apart by where it runs: *module level* (at import time) or *function level* (deferred
until the function is called). Imports under ``if TYPE_CHECKING:`` never run and are left out. ``from a import
b`` counts as an import of ``a.b`` when that is a module, else of ``a``; a package's ``__init__`` is not added
implicitly (as import-linter and pydeps do).

*Layers* (lowest first) say what may import what: a module may import its own layer and those below.
An import of a higher layer is an *upward* import; a *circle* is a strongly connected set of modules
(module- and function-level edges together). *Floors* is the longest chain of module-level imports.
``tests/test_architecture.py`` fails on a new circle or upward import.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "mlfuse"

#: layers, lowest first: (name, module prefixes); the longest matching prefix decides. ``mlfuse`` itself
#: (the root ``__init__``) is a base module: it imports only :mod:`mlfuse.errors`, the API lazily.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("mlfuse", "mlfuse.errors", "mlfuse.progress", "mlfuse.runtime")),
    ("data", ("mlfuse.data", "mlfuse.metrics", "mlfuse.weights")),
    # what the networks are made of besides torch: streamed reductions and their tile specifications
    ("kernels", ("mlfuse.inference.streaming", "mlfuse.inference.tiling")),
    # the training building blocks a method's recipe uses (the loop itself, train.trainer, is higher)
    ("training blocks", ("mlfuse.train.config", "mlfuse.train.recipe", "mlfuse.train.data", "mlfuse.train.patches",
                         "mlfuse.train.distributed")),
    ("models", ("mlfuse.models", "mlfuse.registry")),
    # the pipeline, --fast, shards and export (mlfuse.inference's tiling and streaming are kernels, above)
    ("inference", ("mlfuse.inference",)),
    ("applications", ("mlfuse.train", "mlfuse.bench", "mlfuse.demo", "mlfuse.downstream")),
    ("cli", ("mlfuse.cli", "mlfuse.__main__")),
)


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    line: int
    deferred: bool  # function-level (runs when called) rather than module-level


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterable[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import node with whether it is deferred (inside a function), skipping TYPE_CHECKING blocks."""
    def walk(node: ast.AST, deferred: bool) -> Iterable[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:
                    yield from walk(sub, deferred)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, deferred
            inner = deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from walk(child, inner)
    yield from walk(tree, False)


def _resolve(node: ast.Import | ast.ImportFrom, src: str, is_pkg: bool, modules: dict[str, Path]) -> list[str]:
    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
        return [m for n in names if n.split(".")[0] == PACKAGE and (m := known(n))]
    base = node.module or ""
    if node.level:
        pkg = src if is_pkg else src.rpartition(".")[0]
        for _ in range(node.level - 1):
            pkg = pkg.rpartition(".")[0]
        base = f"{pkg}.{base}" if base else pkg
    if base.split(".")[0] != PACKAGE:
        return []
    out = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        m = sub if sub in modules else known(base)
        if m:
            out.append(m)
    return out


def build_graph(root: Path = ROOT) -> tuple[dict[str, Path], list[Edge]]:
    modules = discover(root)
    edges: set[Edge] = set()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, deferred in _imports(tree):
            for dst in _resolve(node, name, path.name == "__init__.py", modules):
                if dst != name:
                    edges.add(Edge(name, dst, node.lineno, deferred))
    return modules, sorted(edges, key=lambda e: (e.src, e.line, e.dst))


def layer_of(module: str) -> int:
    best = (-1, -1)  # (prefix length, layer index)
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best[0]:
                best = (len(p), i)
    if best[1] < 0:
        raise KeyError(f"{module}: in no layer of tools/import_graph.py LAYERS")
    return best[1]


def upward(edges: Iterable[Edge]) -> list[Edge]:
    return [e for e in edges if layer_of(e.dst) > layer_of(e.src)]


def circles(nodes: Iterable[str], edges: Iterable[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = {n: set() for n in nodes}
    for e in edges:
        graph[e.src].add(e.dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


def floors(nodes: Iterable[str], edges: Iterable[Edge]) -> int:
    """Longest chain of module-level imports (circles collapsed), counted in modules."""
    nodes = list(nodes)
    eager = [e for e in edges if not e.deferred]
    comp_of = {n: n for n in nodes}
    for comp in circles(nodes, eager):
        for n in comp:
            comp_of[n] = comp[0]
    graph: dict[str, set[str]] = {comp_of[n]: set() for n in nodes}
    for e in eager:
        if comp_of[e.src] != comp_of[e.dst]:
            graph[comp_of[e.src]].add(comp_of[e.dst])
    depth: dict[str, int] = {}

    def d(n: str) -> int:
        if n not in depth:
            depth[n] = 0  # guard; the condensed graph has no cycle
            depth[n] = 1 + max((d(m) for m in graph[n]), default=0)
        return depth[n]

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    return max((d(n) for n in graph), default=0)


def report(root: Path = ROOT, show_edges: bool = False) -> str:
    modules, edges = build_graph(root)
    lines = [f"{len(modules)} modules, {sum(not e.deferred for e in edges)} module-level and "
             f"{sum(e.deferred for e in edges)} function-level imports; {floors(modules, edges)} floors"]
    circ = circles(modules, edges)
    lines.append(f"circles: {len(circ)}")
    lines += [f"  ({len(c)}) " + " ".join(c) for c in circ]
    up = upward(edges)
    lines.append(f"upward imports: {len(up)}")
    lines += [f"  {e.src}:{e.line} -> {e.dst} [{LAYERS[layer_of(e.src)][0]} -> {LAYERS[layer_of(e.dst)][0]}, "
              f"{'function' if e.deferred else 'module'} level]" for e in up]
    if show_edges:
        lines += [f"{e.src} -> {e.dst} ({'function' if e.deferred else 'module'}:{e.line})" for e in edges]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="list every edge too")
    args = parser.parse_args(argv)
    print(report(show_edges=args.edges))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
