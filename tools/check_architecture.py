"""Check the house rules of cnnlens's package layout (standard library only; ``python3 tools/check_architecture.py``).

A *room* is a top-level package of cnnlens (``cnnlens.attribution`` with all its subpackages is one room); the
modules directly in ``cnnlens/`` belong to the root. The rules:

a. no import of a ``_``-prefixed module or name owned by another room (dunder names do not count; imports under
   ``if TYPE_CHECKING:`` count too);
b. no ``obj._name`` access where ``_name`` is defined in another room and nowhere in this one (``self``/``cls``
   aside): a private attribute of another room's object;
c. no import circle among cnnlens modules (module-level graph, imports inside functions included, those under
   ``if TYPE_CHECKING:`` left out; importing a package means importing its ``__init__``);
d. no import of the package root ``cnnlens`` from a room, ``cnnlens._version`` aside.

Prints one ``path:line: message`` per violation and exits 1 when there is any.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT_PACKAGE = "cnnlens"
ALLOWED_ROOT_MODULES = {"cnnlens._version"}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@dataclass
class Import:
    """One import statement's target: ``module`` (absolute) and the ``names`` it takes from it (empty: the module)."""

    module: str
    names: list[str]
    line: int
    type_checking: bool


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    tree: ast.Module
    imports: list[Import] = field(default_factory=list)
    nodes: list[ast.AST] = field(default_factory=list)  # every node of the tree, walked once
    room: str = ""


def room_of(dotted: str, modules: dict[str, Module]) -> str:
    """The room that owns a dotted name: ``cnnlens.x...`` with ``x`` a package -> ``x``; else the root ``""``."""
    parts = dotted.split(".")
    if len(parts) > 1 and (head := f"{parts[0]}.{parts[1]}") in modules and modules[head].is_package:
        return parts[1]
    return ""


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _type_checking_imports(nodes: list[ast.AST]) -> set[int]:
    """The ids of the import statements under an ``if TYPE_CHECKING:`` (its ``else`` branch aside)."""
    found = set()
    for node in nodes:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                found.update(
                    id(inner) for inner in ast.walk(statement) if isinstance(inner, (ast.Import, ast.ImportFrom))
                )
    return found


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: Module) -> list[Import]:
    type_checking = _type_checking_imports(module.nodes)
    found = []
    for node in module.nodes:
        if isinstance(node, ast.Import):
            found += [Import(alias.name, [], node.lineno, id(node) in type_checking) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            found.append(Import(_absolute(module, node), names, node.lineno, id(node) in type_checking))
    found.sort(key=lambda imp: imp.line)
    return [i for i in found if i.module == ROOT_PACKAGE or i.module.startswith(ROOT_PACKAGE + ".")]


def load(src: Path) -> dict[str, Module]:
    """Every module under ``src/cnnlens`` by dotted name, parsed, with its cnnlens imports."""
    modules = {}
    for path in sorted((src / ROOT_PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        modules[name] = Module(name, path, is_package, tree)
    for module in modules.values():
        module.nodes = list(ast.walk(module.tree))
        module.imports = _imports(module)
        module.room = room_of(module.name, modules)
    return modules


def _foreign_private(dotted: str, module: Module, modules: dict[str, Module]) -> bool:
    """Is the last part of ``dotted`` private and owned by a room other than ``module``'s?"""
    last = dotted.rsplit(".", 1)[-1]
    return _private(last) and room_of(dotted, modules) != module.room and dotted not in ALLOWED_ROOT_MODULES


def private_imports(modules: dict[str, Module]) -> Iterator[tuple[Module, int, str]]:
    """Rule a: ``_``-prefixed modules or names of another room."""
    for module in modules.values():
        for imp in module.imports:
            parts = imp.module.split(".")
            prefixes = [".".join(parts[: i + 1]) for i in range(1, len(parts))]
            private = [p for p in prefixes if _foreign_private(p, module, modules)]
            if private:
                yield module, imp.line, f"imports private module {private[0]} of another package"
            for name in imp.names:
                if _foreign_private(f"{imp.module}.{name}", module, modules):
                    yield module, imp.line, f"imports private name {name} from {imp.module} of another package"


def _defined_names(module: Module) -> set[str]:
    """The private names a module defines: functions, classes, assigned names and attributes, arguments."""
    names = set()
    for node in module.nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.keyword) and node.arg:
            names.add(node.arg)  # e.g. dataclasses.replace(x, _name=...), setattr-like constructors
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            names.add(node.value)  # __slots__ entries, getattr(obj, "_name") and the like
    return {name for name in names if _private(name)}


def private_attributes(modules: dict[str, Module]) -> Iterator[tuple[Module, int, str]]:
    """Rule b: ``obj._name`` where ``_name`` belongs to another room and is defined nowhere in this one."""
    by_room: dict[str, set[str]] = {}
    for module in modules.values():
        by_room.setdefault(module.room, set()).update(_defined_names(module))
    foreign = {room: set().union(*(n for r, n in by_room.items() if r != room)) - own for room, own in by_room.items()}
    for module in modules.values():
        others = foreign[module.room]
        for node in module.nodes:
            if not (isinstance(node, ast.Attribute) and _private(node.attr)):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr in others:
                yield module, node.lineno, f"reads private attribute {node.attr} defined in another package"


def import_graph(modules: dict[str, Module]) -> dict[str, dict[str, int]]:
    """module -> {imported module: first line}. Importing ``a.b.c`` imports the packages ``a`` and ``a.b`` first,
    save those the importer is inside (they are running already); ``from pkg import sub`` imports ``pkg.sub``, and
    ``pkg`` itself unless the importer is inside it and takes only submodules from it."""
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for module in modules.values():
        for imp in module.imports:
            if imp.type_checking:
                continue
            subs = [f"{imp.module}.{name}" for name in imp.names if f"{imp.module}.{name}" in modules]
            parts = imp.module.split(".")
            parents = [".".join(parts[:i]) for i in range(1, len(parts))]
            targets = [p for p in parents if not module.name.startswith(p + ".")] + subs
            if not module.name.startswith(imp.module + ".") or len(subs) < len(imp.names):
                targets.append(imp.module)  # its names come from its __init__, which may still be running
            for target in targets:
                if target in modules and target != module.name:
                    graph[module.name].setdefault(target, imp.line)
    return graph


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _one_circle(graph: dict[str, dict[str, int]], component: list[str]) -> list[str]:
    """A shortest circle through the first module of a component (breadth first inside it)."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node]):
            if child == start:
                return paths[node] + [start]
            if child in members and child not in paths:
                paths[child] = paths[node] + [child]
                queue.append(child)
    return component


def import_circles(modules: dict[str, Module]) -> Iterator[tuple[Module, int, str]]:
    """Rule c: import circles, one message per strongly connected group, naming one circle in it."""
    graph = import_graph(modules)
    for component in _cycles(graph):
        circle = _one_circle(graph, component)
        first = modules[circle[0]]
        more = f" ({len(component)} modules in the group)" if len(component) > len(circle) - 1 else ""
        yield first, graph[circle[0]][circle[1]], "import circle: " + " -> ".join(circle) + more


def root_imports(modules: dict[str, Module]) -> Iterator[tuple[Module, int, str]]:
    """Rule d: a room importing from the package root ``cnnlens`` (its submodules aside)."""
    for module in modules.values():
        if not module.room:
            continue
        for imp in module.imports:
            if imp.module != ROOT_PACKAGE:
                continue
            names = [n for n in imp.names if f"{ROOT_PACKAGE}.{n}" not in modules or n == "*"] if imp.names else [""]
            for name in names:
                what = f"{ROOT_PACKAGE}.{name}" if name else ROOT_PACKAGE
                if what not in ALLOWED_ROOT_MODULES:
                    yield module, imp.line, f"imports {what} from the package root; import it from its package"


RULES = (private_imports, private_attributes, import_circles, root_imports)


def violations(src: Path) -> list[str]:
    """Every violation under ``src/cnnlens`` as ``path:line: message`` lines, sorted."""
    modules = load(src)
    lines = set()
    for rule in RULES:
        for module, line, message in rule(modules):
            lines.add((str(module.path), line, message))
    return [f"{path}:{line}: {message}" for path, line, message in sorted(lines)]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    src = Path(args[0]) if args else Path(__file__).resolve().parents[1] / "src"
    found = violations(src)
    for line in found:
        print(line)
    if found:
        print(f"{len(found)} architecture violation(s)", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
