"""The package's layers, read from the source: imports point downward only, and the top folder
holds packages plus the few modules every layer shares.

cli -> lab, watch -> host -> render, kernel -> core -> errors (and the package's constants).
A module may import its own package and any layer below its own; never one beside or above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "multihome"

# the rank of each top-level part of the package: an import must go to a lower rank, or stay
# in its own package
LAYERS: dict[str, int] = {
    "__init__": 0,
    "errors": 0,
    "core": 1,
    "kernel": 2,
    "render": 2,
    "host": 3,
    "lab": 4,
    "watch": 4,
    "cli": 5,
    "__main__": 6,
}
TOP_LEVEL_FILES = {"__init__.py", "__main__.py", "errors.py", "py.typed"}


def _part(path: Path, root: Path) -> str:
    """The top-level part of the package a source file belongs to."""
    first = path.relative_to(root).parts[0]
    return first.removesuffix(".py")


def _imported_parts(tree: ast.AST) -> set[str]:
    """The top-level parts of multihome that a module imports (at any depth in the file)."""
    parts: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            dotted = node.module.split(".")
            if dotted[0] != "multihome":
                continue
            if len(dotted) > 1:
                parts.add(dotted[1])
            else:  # from multihome import x: a submodule or a name of the package's __init__
                for alias in node.names:
                    parts.add(alias.name if alias.name in LAYERS else "__init__")
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError("relative imports are not used in this package")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                dotted = alias.name.split(".")
                if dotted[0] == "multihome":
                    parts.add(dotted[1] if len(dotted) > 1 else "__init__")
    return parts


def layer_violations(root: Path) -> list[str]:
    """Every import under `root` that points beside or above its module's layer, and every
    top-level file that is not a package or one of the shared modules."""
    problems: list[str] = []
    for entry in sorted(root.iterdir()):
        if entry.name == "__pycache__":
            continue
        if entry.is_dir():
            if not (entry / "__init__.py").exists():
                problems.append(f"{entry.name}/ is a folder but not a package")
            elif entry.name not in LAYERS:
                problems.append(f"{entry.name}/ has no layer in LAYERS")
        elif entry.name not in TOP_LEVEL_FILES:
            problems.append(f"{entry.name} belongs in one of the layers' packages")
    for path in sorted(root.rglob("*.py")):
        own = _part(path, root)
        rank = LAYERS.get(own)
        if rank is None:
            continue
        for part in sorted(_imported_parts(ast.parse(path.read_text(), str(path)))):
            if part == own:
                continue
            target = LAYERS.get(part)
            if target is None:
                problems.append(f"{path.relative_to(root)} imports multihome.{part}, unknown")
            elif target >= rank:
                problems.append(
                    f"{path.relative_to(root)} ({own}) imports multihome.{part}, "
                    "which is not below it"
                )
    return problems


def test_imports_point_downward_only() -> None:
    assert layer_violations(SRC) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "multihome"
    for name in ("core", "cli", "lab", "kernel"):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "errors.py").write_text("")
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_the_check_fails_when_the_core_imports_the_lab_or_the_cli(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "core/plan.py": "from multihome.lab import scenarios\n",
            "core/model.py": "def f() -> None:\n    from multihome import cli\n",
            "kernel/read.py": "import multihome.core.model\nfrom multihome.errors import E\n",
        },
    )
    assert layer_violations(root) == [
        "core/model.py (core) imports multihome.cli, which is not below it",
        "core/plan.py (core) imports multihome.lab, which is not below it",
    ]


def test_the_check_fails_on_a_module_beside_the_layers(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"netlink.py": "", "lab/x.py": "from multihome.watch import y\n"})
    (root / "watch").mkdir()
    (root / "watch" / "__init__.py").write_text("")
    assert layer_violations(root) == [
        "netlink.py belongs in one of the layers' packages",
        "lab/x.py (lab) imports multihome.watch, which is not below it",
    ]
