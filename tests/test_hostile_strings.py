"""Strings other people choose (comm, cmdline, user, cgroup, a recording's every string) never
reach the terminal as escape sequences or markup: in the live view, its drill-downs, the batch
table and the JSON. The data is the real recording with every string field poisoned."""

from __future__ import annotations

import copy
import json

import pytest
from rich.console import Console

from sigtop.export.report import print_tables, to_json
from sigtop.model import SignalModel
from sigtop.recording import read_recording
from sigtop.sources.replay import ReplaySource
from sigtop.ui.app import SigtopApp
from tests.conftest import RECORDING
from tests.uihelp import detail_shown, settled

# OSC (set the terminal title), CSI (colour), BEL, a bidi override, and markup.
EVIL = "\x1b]0;PWNED\x07\x1b[31mred\x1b[0m\x9b2J[bold red]x[/]\u202eevil"
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def poisoned_batches():
    _, batches = read_recording(RECORDING)
    batches = copy.deepcopy(batches)
    for batch in batches:
        for flow in batch.flows:
            flow.sender_comm = flow.target_comm = EVIL
        for thread in batch.threads:
            thread.comm = EVIL
        for sfd in batch.signalfds:
            sfd.comm = EVIL
        for proc in batch.procs:
            proc.comm = proc.cmdline = proc.user = proc.cgroup = EVIL
            proc.parents = [(pid, EVIL) for pid, _ in proc.parents] or [(1, EVIL)]
        for event in batch.events:
            event.comm = event.target_comm = EVIL
    return batches


def assert_clean(text: str) -> None:
    for raw in RAW:
        assert raw not in text, f"{raw!r} reached the screen"
    assert "[bold red]x[/]" in text  # shown literally, not interpreted
    assert "\\x1b]0;PWNED\\x07" in text  # shown escaped


async def test_every_screen_shows_hostile_strings_escaped():
    app = SigtopApp(ReplaySource(poisoned_batches(), speed=0, name=f"rec{EVIL}.jsonl"))
    async with app.run_test(size=(200, 60)) as pilot:
        await settled(pilot)
        screens = [app.export_screenshot()]
        for table in ("1", "2", "3", "4", "5"):
            await pilot.press(table)
            await settled(pilot)
            screens.append(app.export_screenshot())
            if app.table(app.active).row_count:
                await pilot.press("enter")
                await detail_shown(pilot)
                screens.append(app.export_screenshot())
                await pilot.press("escape")
    for svg in screens:
        # The SVG holds the text as drawn (with entities for <, >, &).
        text = svg.replace("&#160;", " ").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        for raw in RAW:
            assert raw not in text
    # The drill-downs drew user, cgroup, cmdline and parents: read them from the model they drew.
    proc = next(iter(app.model.procs.values()))
    for value in (proc.comm, proc.cmdline, proc.user, proc.cgroup, proc.parents[0][1]):
        assert_clean(value)


def test_batch_table_and_json_carry_no_escape_sequences():
    model = SignalModel()
    for batch in poisoned_batches():
        model.apply(batch)
    console = Console(record=True, width=250, force_terminal=True)
    print_tables(model, console)
    plain = console.export_text(styles=False)
    assert_clean(plain)
    doc = to_json(model)
    for flow in doc["flows"]:
        if flow["sender_pid"]:
            assert_clean(flow["sender_comm"])
    text = json.dumps(doc, ensure_ascii=False)
    for raw in RAW:
        assert raw not in text


@pytest.mark.parametrize("name", ["plain", "café", "日本"])
def test_ordinary_names_are_left_alone(name):
    from sigtop.names import printable

    assert printable(name) == name


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("0::/system.slice/nginx.service\n", "/system.slice/nginx.service"),
        # A host mixing v1 and v2 (this one): v2 says "/", a v1 hierarchy says where.
        ("9:name=systemd:/\n4:memory:/process_api/ecbd48e4\n1:cpu:/\n0::/\n", "/process_api/ecbd48e4"),
        ("9:name=systemd:/user.slice/session-3.scope\n4:memory:/user.slice\n0::/\n", "/user.slice/session-3.scope"),
        ("0::/\n", "/"),
        ("", ""),
    ],
)
def test_cgroup_path_on_v1_v2_and_mixed_hosts(text, path):
    from sigtop.live.procfs import cgroup_of

    assert cgroup_of(text) == path


@pytest.mark.bpf
def test_a_real_cgroup_named_with_escapes_is_shown_escaped(bpf_ready, spawn):
    """The attack as it happened: a cgroup directory whose name is an OSC sequence, read live from /proc."""
    from pathlib import Path

    from sigtop.live.procfs import read_proc

    roots = [p for p in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")) if (p / "cgroup.procs").exists()]
    if not roots:
        pytest.skip("no writable cgroup v2 hierarchy")
    evil = roots[0] / ("sigtop-test-\x1b]0;PWNED\x07[red]x")
    evil.mkdir()
    child = spawn()
    try:
        (evil / "cgroup.procs").write_text(str(child.pid))
        info = read_proc(child.pid)
        assert info is not None
        assert "\x1b" in info.cgroup  # what /proc says, raw
        model = SignalModel()
        from sigtop.wire import Batch

        model.apply(Batch(ts=1, interval_s=1, procs=[info]))
        shown = model.procs[child.pid].cgroup
        assert shown.endswith("sigtop-test-\\x1b]0;PWNED\\x07[red]x")
        for raw in RAW:
            assert raw not in shown
    finally:
        child.stop()
        evil.rmdir()
