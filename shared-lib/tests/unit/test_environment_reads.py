"""Settings come from the environment in one place: the settings package (fleet_shared.settings).

Every runtime and tools module is scanned (shared-lib, the services, tools): reading
``os.environ``, ``os.getenv`` or an ``environ`` mapping anywhere else fails here, so a setting
cannot be parsed twice nor a default written a second time beside the model's.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SCANNED = [ROOT / "shared-lib" / "src", *sorted((ROOT / "services").glob("*/src")),
           ROOT / "tools" / "src"]
SETTINGS = ROOT / "shared-lib" / "src" / "fleet_shared" / "settings"
ENVIRONMENT = {"environ", "environb", "getenv", "getenvb"}

#: Where a module hands the environment on whole, to a process it starts, and reads no setting
#: from it: (file, function) -> why.
ALLOWED = {
    ("shared-lib/src/fleet_shared/service.py", "run_api"):
        "gunicorn replaces `<svc> api` (execve) and inherits its environment",
    ("tools/src/fleet_tools/config.py", "LocalConfig.from_env"):
        "the local fleet's processes start from a copy of fleetctl's environment",
    ("tools/src/fleet_tools/scaffold/regenerate.py", "run"):
        "the scaffold's steps (ruff, uv, fleetctl) run with fleetctl's environment",
}


def modules() -> Iterator[Path]:
    for top in SCANNED:
        for path in sorted(top.rglob("*.py")):
            if SETTINGS not in path.parents:
                yield path


class Reads(ast.NodeVisitor):
    """Each place a module reads the environment, with the function it is in."""

    def __init__(self) -> None:
        self.found: list[tuple[str, int, str]] = []
        self.scope: list[str] = []
        self.os_names = {"os"}

    def _note(self, node: ast.AST, what: str) -> None:
        self.found.append((".".join(self.scope), getattr(node, "lineno", 0), what))

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped  # noqa: N815

    def visit_Import(self, node: ast.Import) -> None:  # noqa: N802 - ast's protocol
        self.os_names |= {alias.asname or "os" for alias in node.names if alias.name == "os"}

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:  # noqa: N802
        if node.module == "os" and ENVIRONMENT & {alias.name for alias in node.names}:
            self._note(node, "from os import environ/getenv")

    def visit_Attribute(self, node: ast.Attribute) -> None:  # noqa: N802
        if isinstance(node.value, ast.Name) and node.value.id in self.os_names \
                and node.attr in ENVIRONMENT:
            self._note(node, f"os.{node.attr}")
        elif node.attr in ("get", "__getitem__") and _is_environ(node.value):
            self._note(node, "environ.get")
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:  # noqa: N802
        if _is_environ(node.value):
            self._note(node, "environ[...]")
        self.generic_visit(node)


def _is_environ(node: ast.AST) -> bool:
    """`environ` or `<anything>.environ`: a process environment by name."""
    return (isinstance(node, ast.Name) and node.id == "environ") or \
        (isinstance(node, ast.Attribute) and node.attr == "environ")


def reads(path: Path) -> list[tuple[str, int, str]]:
    visitor = Reads()
    visitor.visit(ast.parse(path.read_text(), str(path)))
    return visitor.found


def test_only_the_settings_package_reads_the_environment() -> None:
    found = []
    for path in modules():
        where = str(path.relative_to(ROOT))
        found += [f"{where}:{line} {what} in {scope or 'the module'}"
                  for scope, line, what in reads(path) if (where, scope) not in ALLOWED]
    assert not found, "read a setting through fleet_shared.settings instead:\n" + \
        "\n".join(found)


def test_every_allowed_place_still_hands_the_environment_on() -> None:
    """An exception nobody needs any more is removed from the list, not kept as a loophole."""
    for (where, scope), why in ALLOWED.items():
        assert why
        assert any(found_scope == scope for found_scope, _, _ in reads(ROOT / where)), \
            f"{where} {scope} no longer reads the environment: drop it from ALLOWED"


def test_the_scan_sees_every_way_of_reading_it(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nimport os as system\nfrom os import getenv\n"
        "a = os.environ.get('A')\nb = os.getenv('B')\nc = system.environ['C']\n"
        "def f(environ):\n    return environ.get('D')\n"
        "class C:\n    def g(self):\n        return self.environ['E']\n")
    assert sorted({(scope, line) for scope, line, _ in reads(sample)}) == [
        ("", 3), ("", 4), ("", 5), ("", 6), ("C.g", 11), ("f", 8)]
    whats = {what for _, _, what in reads(sample)}
    assert whats == {"from os import environ/getenv", "os.environ", "os.getenv",
                     "environ.get", "environ[...]"}


def test_the_scan_covers_the_runtime_the_services_and_the_tools() -> None:
    scanned = {str(path.relative_to(ROOT)) for path in modules()}
    assert "shared-lib/src/fleet_shared/service.py" in scanned
    assert "shared-lib/src/fleet_shared/gunicorn_conf.py" in scanned
    assert "tools/src/fleet_tools/config.py" in scanned
    assert {"inventory", "shipping", "support"} <= {
        Path(p).parts[1] for p in scanned if p.startswith("services/")}
    assert not any(p.startswith("shared-lib/src/fleet_shared/settings/") for p in scanned)
