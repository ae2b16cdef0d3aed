"""The directions of the layout (../STYLE): only live/ touches the kernel; the UI and the model never import it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "sigtop"


def imports(path: Path) -> set[str]:
    """What a module imports when it runs (imports for type checkers alone, under TYPE_CHECKING, run never)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            node.body = []
    names = set()
    for node in ast.walk(tree):
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


# Everything but the sources (which build the live one on demand), the CLI and the doctor.
BESIDE_THE_KERNEL = (
    "ui/", "export/", "model/", "tables/", "wire.py", "codec.py", "events.py", "recording.py", "runner.py",
    "reasons.py", "names.py", "filters.py", "alerts.py", "abi.py", "timefmt.py", "lru.py",
)  # fmt: skip
PURE = ("model/", "tables/", "wire.py", "codec.py", "events.py", "names.py", "filters.py", "reasons.py", "registry.py",
        "alerts.py", "abi.py", "timefmt.py", "containers.py", "lru.py")  # fmt: skip
HEADLESS = (
    "export/", "model/", "tables/", "sources/", "runner.py", "recording.py", "wire.py", "codec.py", "events.py",
    "contract.py",
)  # fmt: skip


def test_ui_export_and_model_never_import_the_live_side():
    for name, used in modules().items():
        if name.startswith(BESIDE_THE_KERNEL):
            assert not any(u.startswith("sigtop.live") for u in used), name


def test_the_model_and_the_tables_import_neither_bcc_nor_textual():
    for name, used in modules().items():
        if name.startswith(PURE):
            assert not any(u.split(".")[0] in ("bcc", "textual") for u in used), name


def test_headless_code_never_imports_the_ui():
    for name, used in modules().items():
        if name.startswith(HEADLESS):
            assert not any(u.startswith(("sigtop.ui", "textual")) for u in used), name


def test_the_model_flows_one_way():
    """Sources feed the model, the model feeds the tables' folds, sinks read them: nothing runs back up."""
    for name, used in modules().items():
        if name.startswith(("tables/", "wire.py", "codec.py", "events.py")):
            assert not any(u == "sigtop.model" or u.startswith("sigtop.model.") for u in used), name
        if name.startswith(("model/", "tables/")):
            assert not any(u.startswith(("sigtop.export", "sigtop.sources", "sigtop.runner")) for u in used), name


def test_every_table_is_one_registered_module():
    from sigtop.tables import TABLES

    modules_here = {p.stem for p in (PACKAGE / "tables").glob("*.py")} - {"__init__", "base"}
    assert modules_here == set(TABLES), "every table module registers its spec, and only those"
    for spec in TABLES.values():
        assert spec.default_sort in spec.column_names(), spec.name
        assert len(set(spec.column_names())) == len(spec.columns), spec.name


def test_no_table_is_listed_outside_its_module():
    """The UI, the report and the man page name the tables as the registry does: each table's
    title and keys (a second list of tables in any of them once went stale)."""
    from sigtop.tables import TABLES

    man = (PACKAGE.parent / "man" / "sigtop.1.include").read_text()
    tables_section = man.split("[TABLES]", 1)[1].split("\n[", 1)[0]
    for spec in TABLES.values():
        keys = ", ".join((spec.key, *spec.other_keys))
        assert f"\\fB{spec.title}\\fR ({keys})" in tables_section, spec.name
    named = re.findall(r"\\fB(\w+)\\fR \(", tables_section)
    assert named == [spec.title for spec in TABLES.values()], "the man page's tables, in the registry's order"
    for path in (PACKAGE / "ui").glob("*.py"):
        text = path.read_text()
        for spec in TABLES.values():  # a table shown by a key written out by hand
            assert f"show_table('{spec.name}')" not in text, (path.name, spec.name)


def test_every_module_says_what_it_is_for():
    for path in PACKAGE.rglob("*.py"):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc, path
        assert len(doc.splitlines()[0]) > 20, path
