"""The live view's settings file: theme, table, sort, folding, hidden columns, interval, filter and
filter presets, kept across runs.

Read from /etc/sigtop/config.toml, then the user's ($XDG_CONFIG_HOME/sigtop/config.toml, or
~/.config/...; under sudo, the invoking user's, not root's), the later overriding the earlier key
by key; `--config FILE` reads that one file instead, `--no-config` none. A file that is not
valid says so in one line, naming the file, the line and what is wrong: sigtop does not start
on a half-read file (`--no-config` starts it with the defaults).

Pure: no Textual, no kernel. The app reads a `ViewConfig`; `save` writes one back (the palette's
"Save these settings").
"""

from __future__ import annotations

import functools
import math
import os
import pwd
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sigtop.filters import FilterError, FlowFilter
from sigtop.tables import TABLES

SYSTEM_FILE = Path("/etc/sigtop/config.toml")
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.1, 60.0
MAX_FILE_BYTES = 1 << 20  # a settings file, not a data file
MAX_PRESETS = 50


class ConfigError(ValueError):
    """What is wrong with a settings file, in one line: FILE:LINE: what."""


@dataclass(frozen=True)
class Preset:
    name: str
    filter: str  # as typed in the filter box


@dataclass
class ViewConfig:
    """The settings in force, and for `sigtop config --show` where each came from."""

    theme: str | None = None  # a Textual theme name (None: Textual's default)
    table: str = "flows"
    sort: dict[str, tuple[str, bool]] = field(default_factory=dict)  # table -> (column, descending)
    fold: bool = True
    group: str = ""  # the flows summed by "sender", "target" or "signal" ("" not grouped)
    tree: bool = False  # the flows as a tree of senders (T)
    hide: dict[str, tuple[str, ...]] = field(default_factory=dict)  # table -> columns never shown
    interval: float | None = None  # seconds (None: the command line's, default 1)
    filter: str = ""  # the view filter to start with
    presets: tuple[Preset, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)  # key -> the file that set it

    def flow_filter(self) -> FlowFilter:
        return FlowFilter.parse(self.filter)


def user_file(environ: dict[str, str] | None = None) -> Path:
    """The invoking user's file: under sudo, SUDO_USER's (their home and XDG, not root's)."""
    env = os.environ if environ is None else environ
    sudo_user = env.get("SUDO_USER")
    if sudo_user and os.geteuid() == 0:
        try:
            home = Path(pwd.getpwnam(sudo_user).pw_dir)
        except KeyError:
            home = Path.home()
        return home / ".config" / "sigtop" / "config.toml"  # their XDG_CONFIG_HOME is not in sudo's env
    xdg = env.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / "sigtop" / "config.toml"


def files(explicit: str | None, none: bool) -> list[Path]:
    """The files to read, lowest precedence first."""
    if none:
        return []
    if explicit is not None:
        return [Path(explicit)]
    return [SYSTEM_FILE, user_file()]


def load(paths: list[Path], explicit: bool = False) -> ViewConfig:
    """Every file in turn (missing ones skipped, unless it was asked for by name)."""
    config = ViewConfig()
    for path in paths:
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            if explicit:
                raise ConfigError(f"{path}: no such file") from None
            continue
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None
        if len(raw) > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES >> 10} KiB: not a settings file")
        apply(config, parse(raw, path), path)
    return config


def parse(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        what = str(exc).split(" (at line")[0]
        if found:
            where = f"{found.group(1)}:{found.group(2)}"
        else:  # "(at end of document)"
            where = str(text.count("\n") + (0 if text.endswith("\n") else 1))
        raise ConfigError(f"{path}:{where}: {what}") from None
    data["__text__"] = text
    return data


def _line(text: str, key: str) -> str:
    """The line a key is set on (tomllib keeps no positions): the first `key =` or `[key]`."""
    pattern = re.compile(rf"^[ \t]*(\[+[ \t]*{re.escape(key)}[ \t]*\]+|{re.escape(key)}[ \t]*=)", re.MULTILINE)
    found = pattern.search(text)
    return str(text.count("\n", 0, found.start()) + 1) if found else "?"


def apply(config: ViewConfig, data: dict[str, Any], path: Path) -> None:
    """One file's settings over what is there, each checked."""
    text = data.pop("__text__", "")

    def bad(key: str, what: str) -> ConfigError:
        return ConfigError(f"{path}:{_line(text, key)}: {key}: {what}")

    known = {f.name for f in fields(ViewConfig)} - {"sources"}
    for key, value in data.items():
        if key not in known:
            raise bad(key, f"unknown setting (known: {', '.join(sorted(known))})")
        if key == "theme":
            if not isinstance(value, str) or not value or len(value) > 64:
                raise bad(key, 'a theme\'s name, e.g. "nord" (ctrl+p, Theme, lists them)')
            config.theme = value
        elif key == "table":
            if value not in TABLES:
                raise bad(key, f"one of {', '.join(TABLES)}")
            config.table = value
        elif key == "sort":
            config.sort = {**config.sort, **_sorts(value, functools.partial(bad, key))}
        elif key == "fold":
            if not isinstance(value, bool):
                raise bad(key, "true or false")
            config.fold = value
        elif key == "tree":
            if not isinstance(value, bool):
                raise bad(key, "true or false")
            config.tree = value
        elif key == "group":
            if value not in ("", *TABLES["flows"].groupings):
                raise bad(key, f'one of "", {", ".join(repr(g) for g in TABLES["flows"].groupings)}'.replace("'", '"'))
            config.group = value
        elif key == "hide":
            config.hide = {**config.hide, **_hidden(value, functools.partial(bad, key))}
        elif key == "interval":
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise bad(key, f"a number of seconds, {MIN_INTERVAL_S:g} to {MAX_INTERVAL_S:g}")
            if not MIN_INTERVAL_S <= value <= MAX_INTERVAL_S:
                raise bad(key, f"{value} is outside {MIN_INTERVAL_S:g} to {MAX_INTERVAL_S:g} seconds")
            config.interval = float(value)
        elif key == "filter":
            config.filter = _filter_text(value, functools.partial(bad, key))
        elif key == "presets":
            config.presets = _presets(value, functools.partial(bad, key))
        config.sources[key] = str(path)


def _sorts(value: Any, bad: Any) -> dict[str, tuple[str, bool]]:
    """sort = { flows = "count", signalfd = "-last" }: a column's name, "-" first for ascending."""
    if not isinstance(value, dict):
        raise bad('a table of table = "column", e.g. { flows = "count" } ("-count": smallest first)')
    sorts = {}
    for table, column in value.items():
        if table not in TABLES:
            raise bad(f"no table {table!r} (one of {', '.join(TABLES)})")
        if not isinstance(column, str):
            raise bad(f"{table}: a column's name")
        name = column.removeprefix("-")
        if name not in TABLES[table].column_names():
            raise bad(f"{table} has no column {name!r} (one of {', '.join(TABLES[table].column_names())})")
        sorts[table] = (name, not column.startswith("-"))
    return sorts


def _hidden(value: Any, bad: Any) -> dict[str, tuple[str, ...]]:
    """hide = { flows = ["rate", "last"] }: columns that are never shown."""
    if not isinstance(value, dict):
        raise bad('a table of table = ["column", ...], e.g. { flows = ["rate"] }')
    hidden = {}
    for table, columns in value.items():
        if table not in TABLES:
            raise bad(f"no table {table!r} (one of {', '.join(TABLES)})")
        names = TABLES[table].column_names()
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise bad(f"{table}: a list of column names")
        for column in columns:
            if column not in names:
                raise bad(f"{table} has no column {column!r} (one of {', '.join(names)})")
            if TABLES[table].column(column).priority >= 100:
                raise bad(f"{table}: {column!r} says whose the row is: it cannot be hidden")
        hidden[table] = tuple(columns)
    return hidden


def _filter_text(value: Any, bad: Any) -> str:
    if not isinstance(value, str):
        raise bad('a filter as typed in the filter box, e.g. "comm:nginx sig:TERM"')
    try:
        return FlowFilter.parse(value).describe()
    except FilterError as exc:
        raise bad(str(exc)) from None


def _presets(value: Any, bad: Any) -> tuple[Preset, ...]:
    """presets = [ { name = "my daemon", filter = "comm:mydaemon" }, ... ]: in the palette."""
    if not isinstance(value, list) or len(value) > MAX_PRESETS:
        raise bad(f'a list (at most {MAX_PRESETS}) of {{ name = "...", filter = "..." }}')
    found = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"name", "filter"} or not isinstance(item["name"], str):
            raise bad('each one { name = "...", filter = "..." }')
        if not item["name"] or len(item["name"]) > 80:
            raise bad("a preset's name: 1 to 80 characters")
        found.append(Preset(item["name"], _filter_text(item["filter"], bad)))
    return tuple(found)


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render(config: ViewConfig) -> str:
    """The settings as a file `load` reads back the same (what `save` writes, `--show` prints)."""
    lines = ["# sigtop's live view settings (sigtop config --show says which file set what)"]
    if config.theme:
        lines.append(f"theme = {_toml_string(config.theme)}")
    lines.append(f"table = {_toml_string(config.table)}")
    if config.sort:
        pairs = ", ".join(f"{t} = {_toml_string(('' if d else '-') + c)}" for t, (c, d) in sorted(config.sort.items()))
        lines.append(f"sort = {{ {pairs} }}")
    lines.append(f"fold = {'true' if config.fold else 'false'}")
    if config.group:
        lines.append(f"group = {_toml_string(config.group)}")
    if config.tree:
        lines.append("tree = true")
    if config.hide:
        pairs = ", ".join(f"{t} = [{', '.join(map(_toml_string, cs))}]" for t, cs in sorted(config.hide.items()))
        lines.append(f"hide = {{ {pairs} }}")
    if config.interval is not None:
        lines.append(f"interval = {config.interval:g}")
    if config.filter:
        lines.append(f"filter = {_toml_string(config.filter)}")
    if config.presets:
        items = ", ".join(
            f"{{ name = {_toml_string(p.name)}, filter = {_toml_string(p.filter)} }}" for p in config.presets
        )
        lines.append(f"presets = [ {items} ]")
    return "\n".join(lines) + "\n"


def save(config: ViewConfig, path: Path) -> None:
    """Write the settings to `path` whole or not at all (a temporary file renamed over it), owned by
    the invoking user under sudo. OSError (a full disk, a read-only home) is the caller's to say."""
    made = [p for p in (path.parent.parent, path.parent) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "x", encoding="utf-8") as out:
            out.write(render(config))
        _give_to_sudo_user([*made, temporary])
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _give_to_sudo_user(paths: list[Path]) -> None:
    """Under sudo, what was made for the invoking user's file is theirs (only what was made here)."""
    user = os.environ.get("SUDO_USER")
    if not user or os.geteuid() != 0:
        return
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return
    for path in paths:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def show(config: ViewConfig, paths: list[Path]) -> str:
    """What `sigtop config --show` prints: the files looked at, then each setting and its source."""
    out = ["# files, lowest precedence first:"]
    out += [f"#   {p} ({'read' if p.exists() else 'absent'})" for p in paths] or ["#   none (--no-config)"]
    for line in render(config).splitlines()[1:]:
        key = line.split(" ", 1)[0]
        out.append(f"{line}    # {config.sources.get(key, 'default')}")
    return "\n".join(out)
