"""The package's imports go one way: no cycle, and no room imports a room above it.

Every module of ``youtube8m_willow`` is parsed with ``ast`` (nothing is
imported), and each ``import`` of the package, at module level or inside a
function, is an edge to the module it names: ``from youtube8m_willow.x import
y`` points at the module ``x.y`` when there is one, else at ``x``. Importing a
submodule also runs its package's ``__init__``; that implicit edge is left
out, since a package's ``__init__`` re-exporting its own submodules is no cycle
for Python (the package is already in ``sys.modules``).

The rooms, lowest first (a module may import its own room and those below):

1. ``errors``, ``config``, ``atomic``, ``startup``: the vocabulary every
   room speaks (user errors, the typed model flags, atomic file writes, the
   quiet start of an entry point: a ``python -m`` tool of any room calls it
   before TensorFlow is imported); they import nothing else of the package.
2. ``legacy``: the original checkpoints' variable names and ``.meta`` graphs,
   as plain data.
3. ``checkpoint``: the TF1 checkpoint format: find, read, write, rotate. It
   knows the names (``legacy``) but no model and no optimizer, which is why
   it sits below both: the models read their config off a checkpoint
   (``models.original_train_dir``) and the optimizers their slots
   (``training.optimizer_state``).
4. ``native``: the project's own TensorFlow kernels, built against the
   installed TensorFlow (``native.build``), and their loaders.
5. ``layers``: Keras layers, usable on their own.
6. ``models``: the models built from layers, the registry of their original
   class names, their config inferred from a checkpoint.
7. ``data``: the tf.data readers and the synthetic data (no model needed).
8. ``losses``, ``metrics``, ``summaries``, ``progress`` (the live bar of
   a loop on a terminal) and ``compat`` (the starter's module names of the
   metrics: ``youtube8m_willow.eval_util``, ...): what a run computes and
   reports.
9. ``training``: optimizers, their state in a checkpoint, the loop.
10. ``evaluation`` (and ``eval_report``, its per-class report),
   ``prediction``, ``segments``, ``submission``, ``portable``: the engines
   that use trained models (they may use training's checkpoint restore); ``validation`` and ``train_dir_flags``:
   the scripts' configs checked and resolved against a train_dir's saved
   flags (they know the models, losses and optimizers by name).
11. ``flags``: absl flags -> the configs of every engine below;
    ``flag_help``: every flag's help line and group (plain text, no import).
12. ``cli``, ``apps`` (what each script does, as a function of its
    configs), ``demo``, ``portable.convert``: entry points
    (``portable.convert`` is a ``python -m`` script: absl flags and
    ``main``); and the package's
    own ``__init__``, which no module imports (it registers the starter's
    module names through ``compat``).

A module not in any room fails the test: a new top-level module must say
where it stands.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "youtube8m_willow"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

ROOMS: list[tuple[str, ...]] = [
    ("errors", "config", "atomic", "startup"),
    ("legacy",),
    ("checkpoint",),
    ("native",),
    ("layers",),
    ("models",),
    ("data",),
    ("losses", "metrics", "summaries", "progress", "compat"),
    ("training",),
    ("evaluation", "eval_report", "prediction", "segments", "submission", "portable",
     "validation", "train_dir_flags"),
    ("flags", "flag_help"),
    ("cli", "apps", "demo", "portable.convert", ""),  # "": the package's own __init__
]

# Upward edges tolerated until the part of the work that removes them lands:
# {(importer, imported): reason}. Remove an entry with the edge it names.
ALLOWED_UPWARD_EDGES: dict[tuple[str, str], str] = {}


def package_modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of the package."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imported_base(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` reads from."""
    if not node.level:
        return node.module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``module`` imports, anywhere in its body."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _imported_base(node, module, is_package)
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                         for alias in node.names)
    return {name for name in found if name in modules and name != module}


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``."""
    modules = package_modules(package_dir)
    return {module: imports_of(module, path, modules) for module, path in modules.items()}


def room_of(module: str) -> int | None:
    """The index in ROOMS of the most specific entry naming ``module`` or a
    package above it; None when no entry does."""
    relative = module.removeprefix(PACKAGE).removeprefix(".")
    best, best_length = None, -1
    for index, names in enumerate(ROOMS):
        for name in names:
            if name == relative or (name and relative.startswith(name + ".")) or (
                    not name and not relative):
                if len(name) > best_length:
                    best, best_length = index, len(name)
    return best


def cyclic_groups(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected groups of more than one module (Tarjan): each
    module of a group reaches every other through imports."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per cyclic group, as the path that closes it."""
    return [_cycle_within(graph, group) for group in cyclic_groups(graph)]


def _cycle_within(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """The shortest path ``a -> ... -> a`` inside one strongly connected
    group (breadth first from its first module)."""
    start = min(group)
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & group):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return path[::-1] + [start]
                if target not in came_from:
                    came_from[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"not a cycle: {sorted(group)}")


def upward_edges(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Edges from a room to a room above it, allowed ones left out."""
    return sorted((importer, imported) for importer, targets in graph.items()
                  for imported in targets
                  if room_of(imported) > room_of(importer)
                  and (importer, imported) not in ALLOWED_UPWARD_EDGES)


def test_every_module_has_a_room():
    homeless = sorted(m for m in package_modules() if room_of(m) is None)
    assert not homeless, f"modules in no room (add them to ROOMS): {', '.join(homeless)}"


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    groups = cyclic_groups(graph)
    assert not groups, "import cycles:\n" + "\n".join(
        f"{' -> '.join(_cycle_within(graph, group))} (the cycle joins {', '.join(sorted(group))})"
        for group in groups)


def test_no_module_imports_a_room_above_its_own():
    edges = upward_edges(import_graph())
    assert not edges, "upward imports (importer -> imported, rooms in the docstring):\n" + (
        "\n".join(f"{a} (room {room_of(a) + 1}) -> {b} (room {room_of(b) + 1})"
                  for a, b in edges))


def test_allowed_edges_still_exist():
    """An allow-list entry whose edge is gone must go too."""
    graph = import_graph()
    stale = [edge for edge in ALLOWED_UPWARD_EDGES if edge[1] not in graph.get(edge[0], ())]
    assert not stale, f"allowed upward edges no longer present (remove them): {stale}"


def test_the_graph_sees_function_level_and_relative_imports(tmp_path):
    """The parser itself: an import inside a function counts, a relative one
    resolves, ``from package import submodule`` points at the submodule."""
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "errors.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import leaf\n")
    (package / "sub" / "leaf.py").write_text(
        "def late():\n    from youtube8m_willow import errors\n")
    (package / "sub" / "other.py").write_text(
        "from .leaf import late\nimport youtube8m_willow.sub\n")
    graph = import_graph(package)
    assert graph[f"{PACKAGE}.sub"] == {f"{PACKAGE}.sub.leaf"}
    assert graph[f"{PACKAGE}.sub.leaf"] == {f"{PACKAGE}.errors"}
    assert graph[f"{PACKAGE}.sub.other"] == {f"{PACKAGE}.sub.leaf", f"{PACKAGE}.sub"}
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
