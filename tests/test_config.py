"""The live view's settings file: read, checked (file:line and what), merged, shown, saved; and the
real app started with one and saving one (Textual's Pilot over the real recording)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from sigtop import config
from sigtop.recording import read_recording
from sigtop.sources.replay import ReplaySource
from sigtop.ui.app import SigtopApp
from tests.conftest import RECORDING
from tests.uihelp import settled

GOOD = """\
theme = "nord"
table = "signalfd"
sort = { flows = "signal", signalfd = "-pid" }
fold = false
group = "signal"
hide = { flows = ["rate", "last", "via"] }
interval = 2.5
filter = "comm:nginx"
presets = [ { name = "my daemon", filter = "comm:stuck is:noeffect" } ]
"""


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_tree_is_kept_and_read_back(tmp_path):
    got = config.load([write(tmp_path, "tree = true\n")], explicit=True)
    assert got.tree is True
    assert "tree = true" in config.render(got)
    assert config.load([write(tmp_path, config.render(got), "again.toml")], explicit=True).tree is True


def test_a_file_is_read_whole_and_renders_back_the_same(tmp_path):
    path = write(tmp_path, GOOD)
    got = config.load([path], explicit=True)
    assert (got.theme, got.table, got.fold, got.interval, got.filter) == ("nord", "signalfd", False, 2.5, "comm:nginx")
    assert got.group == "signal"
    assert got.sort == {"flows": ("signal", True), "signalfd": ("pid", False)}
    assert got.hide == {"flows": ("rate", "last", "via")}
    assert got.presets == (config.Preset("my daemon", "comm:stuck is:noeffect"),)
    assert set(got.sources.values()) == {str(path)}
    again = config.load([write(tmp_path, config.render(got), "again.toml")], explicit=True)
    again.sources = got.sources = {}
    assert again == got


def test_later_files_override_earlier_ones_key_by_key(tmp_path):
    system = write(tmp_path, 'table = "deaths"\ninterval = 3\nsort = { flows = "signal" }\n', "system.toml")
    user = write(tmp_path, 'interval = 0.5\nsort = { signalfd = "fd" }\n', "user.toml")
    got = config.load([system, tmp_path / "absent.toml", user])
    assert (got.table, got.interval) == ("deaths", 0.5)
    assert got.sort == {"flows": ("signal", True), "signalfd": ("fd", True)}
    assert (got.sources["table"], got.sources["interval"]) == (str(system), str(user))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('table = "flows"\nsort = { flows = "nope" }\n', ":2: sort: flows has no column 'nope'"),
        ('table = "nope"\n', ":1: table: one of flows, signalfd"),
        ("interval = nan\n", ":1: interval: a number of seconds"),
        ("interval = 1e9\n", ":1: interval: 1000000000.0 is outside 0.1 to 60 seconds"),
        ('fold = "yes"\n', ":1: fold: true or false"),
        ("tree = 1\n", ":1: tree: true or false"),
        ('group = "pid"\n', ':1: group: one of "", "sender", "target", "signal"'),
        ('filter = "pid:abc"\n', ":1: filter: 'abc' is not a pid"),
        ('hide = { flows = ["sender"] }\n', "says whose the row is: it cannot be hidden"),
        ("\n\ncolour = 1\n", ":3: colour: unknown setting"),
        ('table = "flows"\ninterval = [\n', ":2: Invalid value"),
        ('presets = [ { name = "x" } ]\n', ':1: presets: each one { name = "...", filter = "..." }'),
        ("theme = \x00\n", ":1:"),
    ],
)
def test_a_bad_file_says_where_and_what_in_one_line(tmp_path, text, error):
    path = write(tmp_path, text)
    with pytest.raises(config.ConfigError) as raised:
        config.load([path], explicit=True)
    message = str(raised.value)
    assert message.startswith(str(path))
    assert error in message
    assert "\n" not in message


def test_bytes_that_are_no_settings_file_are_refused(tmp_path):
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe table")
    with pytest.raises(config.ConfigError, match="not UTF-8"):
        config.load([binary], explicit=True)
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"#" * (config.MAX_FILE_BYTES + 1))
    with pytest.raises(config.ConfigError, match="not a settings file"):
        config.load([huge], explicit=True)
    with pytest.raises(config.ConfigError, match="no such file"):
        config.load([tmp_path / "absent.toml"], explicit=True)


def test_under_sudo_the_file_is_the_invoking_users(tmp_path):
    import pwd

    nobody = pwd.getpwnam("nobody")
    if sys.platform != "linux":
        pytest.fail("Linux only")
    path = config.user_file({"SUDO_USER": "nobody", "XDG_CONFIG_HOME": "/root/elsewhere"})
    if config.os.geteuid() == 0:
        assert path == Path(nobody.pw_dir) / ".config" / "sigtop" / "config.toml"
    assert config.user_file({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "sigtop" / "config.toml"
    assert config.user_file({"XDG_CONFIG_HOME": "relative/is/ignored"}) == Path.home() / ".config/sigtop/config.toml"


def test_config_show_names_each_settings_file_and_a_bad_one_fails_in_one_line(tmp_path):
    good = write(tmp_path, GOOD)
    shown = subprocess.run(
        [sys.executable, "-m", "sigtop", "--config", str(good), "config", "--show"], capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    assert f'table = "signalfd"    # {good}' in shown.stdout
    bad = write(tmp_path, "interval = -1\n", "bad.toml")
    failed = subprocess.run(
        [sys.executable, "-m", "sigtop", "--config", str(bad), "config", "--show"], capture_output=True, text=True
    )
    assert failed.returncode == 2
    (line,) = failed.stderr.splitlines()
    assert line.startswith(f"sigtop: {bad}:1: interval: -1 is outside")
    assert "--no-config" in line
    none = subprocess.run(
        [sys.executable, "-m", "sigtop", "--config", str(bad), "--no-config", "config", "--show"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert none.returncode == 0
    assert "none (--no-config)" in none.stdout


@pytest.fixture(scope="module")
def batches():
    return read_recording(RECORDING)[1]


async def test_the_app_starts_as_the_file_says_and_saves_what_it_shows(batches, tmp_path):
    path = write(tmp_path, GOOD)
    settings = config.load([path], explicit=True)
    app = SigtopApp(ReplaySource(copy.deepcopy(batches), speed=0), config=settings, config_file=path)
    async with app.run_test(size=(160, 40)) as pilot:
        await settled(pilot)
        assert app.theme == "nord"
        assert app.active == "signalfd"
        assert app.settings.sort("signalfd") == ("pid", False)
        assert app.settings.sort("flows") == ("signal", True)
        assert app.flow_filter.describe() == "comm:nginx"
        assert app.settings.fold is False
        assert app.settings.group == "signal"
        await pilot.press("1")
        await settled(pilot)
        labels = [str(c.label).split()[0] for c in app.table("flows").columns.values()]
        assert not {"RATE/s", "LAST", "VIA"} & set(labels)
        assert "SENDER" in labels
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        commands["Filter: my daemon"].callback()
        await settled(pilot)
        assert app.flow_filter.describe() == "comm:stuck is:noeffect"
        app.theme = "gruvbox"
        commands["Save these settings"].callback()
        await settled(pilot)
    saved = config.load([path], explicit=True)
    assert (saved.theme, saved.table, saved.filter) == ("gruvbox", "flows", "comm:stuck is:noeffect")
    assert (saved.hide, saved.interval, saved.presets) == (settings.hide, 2.5, settings.presets)
    assert saved.sort == settings.sort
