"""State is explicit, read from the source: no module remembers anything between calls, and no
module reaches into another library's private attributes.

What outlives a call lives in an object its owner holds (DESIGN.md, "Architecture"): a module
may bind constants at import, but never a `global` it rebinds later, a container it fills
from a function, or a cache decorator. And the standard library's or pyroute2's private
attributes (`ipaddress`'s `_ip`, argparse's `_actions`) are not an interface.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "multihome"

MUTATORS = {
    "append",
    "extend",
    "insert",
    "add",
    "update",
    "setdefault",
    "pop",
    "popitem",
    "clear",
    "remove",
    "discard",
    "__setitem__",
}
EMPTY_CALLS = {"dict", "list", "set", "defaultdict", "OrderedDict", "deque", "Counter"}
CACHE_DECORATORS = {"cache", "lru_cache"}
# Names that start with one underscore but are public API of their library.
PUBLIC = {"_exit", "_asdict", "_replace", "_fields", "_make"}


def _own_names(files: list[tuple[Path, ast.Module]]) -> set[str]:
    """Every name the package defines: functions, classes, attributes it assigns, slots."""
    names: set[str] = set()
    for _, tree in files:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)  # __slots__ entries, setattr/getattr by name
    return names


def _module_level(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name):
                    names.add(leaf.id)
    return names


def _is_empty_container(value: ast.expr | None) -> bool:
    if isinstance(value, ast.Dict | ast.List | ast.Set):
        return not (value.keys if isinstance(value, ast.Dict) else value.elts)
    if isinstance(value, ast.Call):
        func = value.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        return name in EMPTY_CALLS and not value.args
    return False


def _local_names(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    names = {a.arg for a in ast.walk(function.args) if isinstance(a, ast.arg)}
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def hidden_state(root: Path) -> list[str]:
    """Every place under `root` that keeps state in a module or uses a private attribute of
    another library."""
    files = [(p, ast.parse(p.read_text(), str(p))) for p in sorted(root.rglob("*.py"))]
    own = _own_names(files)
    problems: list[str] = []
    for path, tree in files:
        where = str(path.relative_to(root))
        module_names = _module_level(tree)
        for statement in tree.body:
            value = statement.value if isinstance(statement, ast.Assign | ast.AnnAssign) else None
            if _is_empty_container(value):
                problems.append(f"{where}:{statement.lineno}: a module-level container to fill")
        for node in ast.walk(tree):
            if isinstance(node, ast.Global):
                problems.append(f"{where}:{node.lineno}: global {', '.join(node.names)}")
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for decorator in node.decorator_list:
                    target = decorator.func if isinstance(decorator, ast.Call) else decorator
                    name = getattr(target, "attr", getattr(target, "id", ""))
                    if name in CACHE_DECORATORS:
                        problems.append(f"{where}:{node.lineno}: @{name} on {node.name}")
                shared = module_names - _local_names(node)
                for inner in ast.walk(node):
                    if (
                        isinstance(inner, ast.Call)
                        and isinstance(inner.func, ast.Attribute)
                        and inner.func.attr in MUTATORS
                        and isinstance(inner.func.value, ast.Name)
                        and inner.func.value.id in shared
                    ):
                        problems.append(
                            f"{where}:{inner.lineno}: {node.name} changes the module's"
                            f" {inner.func.value.id}"
                        )
                    if (
                        isinstance(inner, ast.Subscript)
                        and isinstance(inner.ctx, ast.Store | ast.Del)
                        and isinstance(inner.value, ast.Name)
                        and inner.value.id in shared
                    ):
                        problems.append(
                            f"{where}:{inner.lineno}: {node.name} changes the module's"
                            f" {inner.value.id}"
                        )
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in own
                and node.attr not in PUBLIC
            ):
                problems.append(f"{where}:{node.lineno}: another library's private .{node.attr}")
    return sorted(set(problems), key=lambda p: (p.split(':')[0], int(p.split(':')[1]), p))


def test_no_module_keeps_state_or_reaches_into_private_attributes() -> None:
    assert hidden_state(SRC) == []


def test_the_check_finds_each_kind(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text(
        "import functools, ipaddress\n"
        "_seen = {}\n"
        "_order: list[int] = []\n"
        "LIMITS = {'a': 1}\n"  # a constant: allowed
        "_last = None\n"
        "def f(x):\n"
        "    global _last\n"
        "    _last = x\n"
        "    _seen[x] = 1\n"
        "    LIMITS.update(b=2)\n"
        "    return ipaddress.IPv4Address(1)._ip\n"
        "@functools.lru_cache(maxsize=None)\n"
        "def g(y):\n"
        "    local = {}\n"
        "    local[y] = 1\n"  # a local container: allowed
        "    return local\n"
    )
    assert hidden_state(tmp_path) == [
        "a.py:2: a module-level container to fill",
        "a.py:3: a module-level container to fill",
        "a.py:7: global _last",
        "a.py:9: f changes the module's _seen",
        "a.py:10: f changes the module's LIMITS",
        "a.py:11: another library's private ._ip",
        "a.py:13: @lru_cache on g",
    ]
