"""The directions of the layout (../STYLE): only live/ touches the kernel; the UI and the model never import it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sigtop"


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def modules(under: Path = PACKAGE) -> dict[str, set[str]]:
    return {str(p.relative_to(PACKAGE)): imports(p) for p in under.rglob("*.py")}


def test_only_live_imports_bcc():
    for name, used in modules().items():
        if not name.startswith("live/"):
            assert not any(u == "bcc" or u.startswith("bcc.") for u in used), name


def test_ui_and_model_never_import_the_live_side():
    for name, used in modules().items():
        if name.startswith(("ui/", "export/")) or name in (
            "model.py",
            "records.py",
            "source.py",
            "report.py",
            "recording.py",
        ):
            assert not any(u.startswith("sigtop.live") for u in used), name


def test_model_imports_neither_bcc_nor_textual():
    for name in ("model.py", "records.py", "names.py", "filters.py"):
        used = imports(PACKAGE / name)
        assert not any(u.split(".")[0] in ("bcc", "textual") for u in used), name


def test_every_module_says_what_it_is_for():
    for path in PACKAGE.rglob("*.py"):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc, path
        assert len(doc.splitlines()[0]) > 20, path


def test_exports_never_import_the_ui():
    for name, used in modules().items():
        if name.startswith("export/"):
            assert not any(u.startswith(("sigtop.ui", "textual")) for u in used), name
