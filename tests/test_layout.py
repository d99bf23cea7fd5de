"""The house rules the import-linter contracts do not cover: no module imports another module's `_private` names,
and no test module imports another test module (shared fixtures live in conftest.py, helpers in tests/support.py or
in a helper module beside the tests that use it, never in a `test_*` module)."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "training", "assets")
# Exceptions being worked on (none now).
IN_PROGRESS: set[str] = set()


def _modules(*roots: str) -> list[Path]:
    return sorted(p for root in roots for p in (REPO / root).rglob("*.py"))


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [a.name for a in node.names]


def test_no_private_names_imported_across_modules():
    offenders = [f"{p.relative_to(REPO)}: from {module} import {name}"
                 for p in _modules(*PACKAGES) for module, names in _imports(p)
                 if module.split(".")[0] in PACKAGES for name in names
                 if name.startswith("_") and not name.startswith("__")]
    assert sorted(set(offenders) - IN_PROGRESS) == []


def test_no_test_module_imports_another():
    offenders = [f"{p.relative_to(REPO)}: from {module}" for p in _modules("tests") for module, _ in _imports(p)
                 if module.startswith("tests.") and module.rsplit(".", 1)[-1].startswith("test_")]
    assert offenders == []
