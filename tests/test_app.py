"""The real app, driven with Textual's Pilot over a real recording (tests/data/recording.jsonl,
captured by scripts/screenshots.py from scripts/workload.py)."""

from __future__ import annotations

import copy
import json
from collections import Counter

import pytest
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Input, Static

from sigtop.filters import FlowFilter
from sigtop.recording import read_recording
from sigtop.sources.replay import ReplaySource
from sigtop.ui.app import SigtopApp
from sigtop.ui.screens import DetailScreen, HelpScreen
from tests.conftest import CHILDREN, RECORDING, open_fds, own_config
from tests.uihelp import detail_shown
from tests.uihelp import settled as loaded

SIZE = (160, 42)


@pytest.fixture(scope="module")
def batches():
    _, batches = read_recording(RECORDING)
    return batches


def make_app(batches, **kwargs) -> SigtopApp:
    return SigtopApp(ReplaySource(copy.deepcopy(batches), speed=0, name="recording.jsonl"), **kwargs)


def rows_by_key(app: SigtopApp) -> dict:
    """The flows table's model rows by the key the widget shows them under (read once the feed is idle)."""
    return {repr(k): r for k, r in app.model.flows.items()}


def column_index(app: SigtopApp, label: str, name: str = "flows") -> int:
    """Where a column is among those shown (narrow terminals hide some)."""
    table = app.query_one(f"#table-{name}", DataTable)
    labels = [str(getattr(c.label, "plain", c.label)).split()[0] for c in table.columns.values()]
    return labels.index(label)


def visible(app: SigtopApp, name: str = "flows") -> list[list[str]]:
    table = app.query_one(f"#table-{name}", DataTable)
    return [[str(getattr(c, "plain", c)) for c in table.get_row_at(i)] for i in range(table.row_count)]


def header(app: SigtopApp) -> str:
    return str(app.query_one("#header", Static).render())


async def test_tables_switch_with_number_keys(batches):
    app = make_app(batches)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert app.active == "flows"
        assert len(visible(app)) == len(app.model.flows) > 5
        await pilot.press("2")
        await loaded(pilot)
        assert app.active == "signalfd"
        rows = visible(app, "signalfd")
        assert any("SIGTERM" in r[3] and "SIGCHLD" in r[3] and "SFD_CLOEXEC" in r[4] for r in rows)
        await pilot.press("3")
        await loaded(pilot)
        assert app.active == "sigreturn"
        assert len(visible(app, "sigreturn")) == len(app.model.sigreturns)
        await pilot.press("1")
        assert app.active == "flows"


async def test_sort_numbers_as_numbers_and_text_as_text(batches):
    app = make_app(batches)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        count = column_index(app, "COUNT")
        counts = [int(r[count].replace(",", "")) for r in visible(app)]
        assert counts == sorted(counts, reverse=True)  # default: COUNT, descending
        await pilot.press("I")
        await loaded(pilot)
        counts = [int(r[count].replace(",", "")) for r in visible(app)]
        assert counts == sorted(counts)
        await pilot.press("less_than_sign", "less_than_sign", "less_than_sign")  # COUNT -> TARGET COMM
        assert app.sort["flows"] == ("target_comm", False)
        await loaded(pilot)
        comms = [r[3] for r in visible(app)]
        assert comms == sorted(comms)
        await pilot.press("greater_than_sign")  # SIGNAL: by number, not name
        await loaded(pilot)
        signals = [r[4] for r in visible(app)]
        assert signals.index("SIGUSR1") < signals.index("SIGTERM")  # 10 before 15
        table = app.query_one("#table-flows", DataTable)
        assert "▲" in str(list(table.columns.values())[4].label)


async def test_header_click_sorts_by_that_column(batches):
    app = make_app(batches)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        table = app.query_one("#table-flows", DataTable)
        columns = list(table.columns.values())
        x = sum(c.get_render_width(table) for c in columns[: column_index(app, "SIGNAL")]) + 1  # inside SIGNAL
        await pilot.click("#table-flows", offset=(x, 0))
        assert app.sort["flows"] == ("signal", True)  # a new column starts descending
        await loaded(pilot)
        signals = [r[4] for r in visible(app)]
        assert signals.index("SIGTERM") < signals.index("SIGUSR1")  # 15 before 10
        await pilot.click("#table-flows", offset=(x, 0))
        assert app.sort["flows"] == ("signal", False)  # the same column again: inverted
        assert "▲" in str(list(table.columns.values())[4].label)


async def test_filter_by_pid_and_invalid_input(batches):
    app = make_app(batches)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        top = max(app.model.flows.values(), key=lambda r: r.count)
        pid = top.key.target_pid
        await pilot.press("slash", *f"pid:{pid}", "enter")
        await loaded(pilot)
        rows = visible(app)
        assert rows
        assert all(str(pid) in (r[0], r[2]) for r in rows)
        assert len(rows) < len(app.model.flows)
        assert f"pid:{pid}" in header(app)
        await pilot.press("slash", "ctrl+a", *"pid:abc", "enter")
        error = str(app.query_one("#filter-error", Static).render())
        assert "not a pid" in error
        assert app.flow_filter.pids == {pid}  # the old filter stays
        await pilot.press("escape")  # in the box: closes it, back to the filter it opened with
        assert app.flow_filter.pids == {pid}
        await pilot.press("escape")  # then: clears it
        assert not app.flow_filter
        await loaded(pilot)
        assert len(visible(app)) == len(app.model.flows)


async def test_the_filter_applies_as_you_type_and_stays_on_screen(batches):
    """At 80x24, with a full table: the box is on screen while typing, the rows follow each key,
    and an expression that does not parse says why while the last good filter stays."""
    app = make_app(batches)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        pid = max(app.model.flows.values(), key=lambda r: r.count).key.target_pid
        await pilot.press("slash", *f"pid:{pid}")
        await loaded(pilot)
        box = app.query_one("#filter", Input)
        assert box.region.height > 0
        assert box.region.y + box.region.height <= 24
        assert all(str(pid) in (r[0], r[2]) for r in visible(app))
        assert len(visible(app)) < len(app.model.flows)
        await pilot.press("x")
        await loaded(pilot)
        error = app.query_one("#filter-error", Static)
        assert "not a pid" in str(error.render())
        assert error.region.y < 24
        assert app.flow_filter.pids == {pid}
        await pilot.press("backspace", "enter")
        assert app.flow_filter.pids == {pid}
        assert app.focused is app.table("flows")


async def test_comm_filter_from_the_command_line(batches):
    app = make_app(batches, flow_filter=FlowFilter.parse("comm:crasher"))
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        rows = visible(app)
        sig, via = column_index(app, "SIGNAL"), column_index(app, "VIA")
        # its fault, and the SIGCHLD of its death, which the kernel raises on it
        assert sorted((r[sig], r[via]) for r in rows) == [("SIGCHLD", "child"), ("SIGSEGV", "fault")]


async def test_drill_down_and_back(batches):
    app = make_app(batches)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        top_key = app.table("flows").cursor_key()
        await pilot.press("enter")
        await detail_shown(pilot)
        assert isinstance(app.screen, DetailScreen)
        assert app.screen.detail.title.startswith("Flow ")
        events = app.screen.query_one("#detail-table-0", DataTable)
        assert events.row_count == min(len(rows_by_key(app)[top_key].events), 200) > 0
        first = [str(getattr(c, "plain", c)) for c in events.get_row_at(0)]
        assert first[3].startswith("kill(")
        app.feed.view(app.settings)  # a snapshot while the detail screen is on top
        await loaded(pilot)
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)
        await pilot.press("3")
        await loaded(pilot)
        await pilot.press("enter")
        await detail_shown(pilot)
        assert app.screen.detail.title.startswith("rt_sigreturn of ")


async def test_pause_freezes_view_but_keeps_counting(batches):
    app = SigtopApp(ReplaySource(copy.deepcopy(batches[:2]), speed=0))
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        before = visible(app)
        await pilot.press("space")
        assert "PAUSED" in header(app)
        for batch in copy.deepcopy(batches[2:]):
            app.feed.put(batch)
        app.feed.view(app.settings)
        await loaded(pilot)
        assert visible(app) == before
        counted = app.model.total_signals
        assert counted > sum(int(r[6].replace(",", "")) for r in before)
        await pilot.press("p")
        await loaded(pilot)
        assert visible(app) != before


async def test_clear_help_and_quit(batches):
    app = make_app(batches)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("c")
        await loaded(pilot)
        assert visible(app) == []
        assert app.model.total_signals == 0
        await pilot.press("q")
    assert app.return_code == 0  # q quits cleanly, as a user expects
    assert app.failure is None


async def test_process_chosen_names_show_literally(batches):
    app = make_app(batches)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert any(r[3] == "[red]x" for r in visible(app))  # markup is not interpreted


def test_snapshot_main_screen(batches, snap_compare):
    assert snap_compare(make_app(batches), terminal_size=SIZE, run_before=loaded)


def test_snapshot_flow_detail(batches, snap_compare):
    async def drill(pilot):
        await loaded(pilot)
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(make_app(batches), terminal_size=SIZE, run_before=drill)


@pytest.mark.bpf
async def test_live_app_shows_real_signals_then_detaches(bpf_ready, spawn):
    from sigtop.live.collector import BpfSource

    target = spawn()
    sender = spawn()
    target.ask("ignore SIGUSR2")
    bpf_fds = open_fds("bpf-prog")
    source = BpfSource(own_config(target.pid, sender.pid, interval_s=0.2))
    app = SigtopApp(source, refresh_s=0.2)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(100):  # the app attaches behind its first screen
            await pilot.pause(0.1)
            if "LIVE" in header(app):
                break
        assert open_fds("bpf-prog") > bpf_fds
        assert sender.ask(f"kill {target.pid} SIGUSR2 17") == "ok"
        for _ in range(50):
            await pilot.pause(0.1)
            rows = [r for r in visible(app) if r[0] == str(sender.pid) and r[2] == str(target.pid)]
            if rows and rows[0][6] == "17":
                break
        assert rows, visible(app)
        ign, reason = column_index(app, "IGN"), column_index(app, "REASON")
        assert (rows[0][4], rows[0][5], rows[0][6], rows[0][ign]) == ("SIGUSR2", "kill", "17", "17")
        assert rows[0][reason] == "ignored: SIG_IGN"  # from the target's disposition in /proc
        await pilot.press("q")
    source.detach()
    assert open_fds("bpf-prog") == bpf_fds
    assert source.bpf is None


def bumped(batch, flow_index: int, count: int):
    """A copy of a real recorded batch carrying only one of its flows, with a new count."""
    later = copy.deepcopy(batch)
    flow = later.flows[flow_index]
    flow.count = count
    later.flows, later.events, later.final = [flow], [], False
    return later


async def test_cursor_and_scroll_survive_a_reordering_refresh(batches):
    app = make_app(batches)
    async with app.run_test(size=(160, 14)) as pilot:  # fewer lines than rows: the table scrolls
        await loaded(pilot)
        table = app.table("flows")
        assert table.row_count > table.size.height - 1
        await pilot.press(*["down"] * 10, *["up"] * 3)  # scrolled, the cursor mid-screen
        cursor, scroll = table.cursor_key(), table.scroll_y
        assert scroll > 0
        order = [r.key.value for r in table.ordered_rows]
        rows = rows_by_key(app)
        # The 2nd and 3rd rows trade places; the cursor's row stays where it is.
        second = rows[order[1]]
        third = rows[order[2]]
        source_batch = next(b for b in batches if any(app.model.row_key(f.key) == third.key for f in b.flows))
        index = next(i for i, f in enumerate(source_batch.flows) if app.model.row_key(f.key) == third.key)
        app.feed.put(bumped(source_batch, index, second.count))
        app.feed.view(app.settings)
        await loaded(pilot)
        now = [r.key.value for r in table.ordered_rows]
        assert now[1:3] == [order[2], order[1]]
        assert table.cursor_key() == cursor
        assert table.scroll_y == scroll
        # Now the cursor's own row jumps to the top: the cursor goes with it.
        row = rows_by_key(app)[cursor]
        source_batch = next(b for b in batches if any(app.model.row_key(f.key) == row.key for f in b.flows))
        index = next(i for i, f in enumerate(source_batch.flows) if app.model.row_key(f.key) == row.key)
        app.feed.put(bumped(source_batch, index, 100_000))
        app.feed.view(app.settings)
        await loaded(pilot)
        assert table.cursor_key() == cursor
        assert table.cursor_row == 0
        assert table.ordered_rows[0].key.value == cursor


def labels_of(app: SigtopApp) -> list[str]:
    return [str(c.label).split()[0] for c in app.table("flows").columns.values()]


async def test_narrow_terminal_keeps_who_what_and_why(batches):
    """At 80x24 the question stays answerable: both ends with their names, the signal, the count
    and the reason; names and reasons are cut with an ellipsis before they would go, the header
    says how many columns are hidden, and the column sorted by is never one of them."""
    app = make_app(batches)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        labels = labels_of(app)
        assert labels == ["SENDER", "COMM", "TARGET", "COMM", "SIGNAL", "COUNT", "REASON"]
        hidden = len(app.table("flows").spec.columns) - len(labels)
        assert f"+{hidden} columns when wider" in header(app)
        rows = visible(app)
        names = {r.target_comm for r in app.model.flows.values()}
        assert any(r[3].endswith("…") and any(n.startswith(r[3][:-1]) for n in names) for r in rows), rows
        assert any(r[6].startswith("ignored") for r in rows)
        for row in rows:  # every row fits the terminal
            assert sum(len(cell) + 2 for cell in row) <= 80, row
        await pilot.press("less_than_sign")  # sort by the column left of COUNT: SIGNAL, shown
        await pilot.press("greater_than_sign", "greater_than_sign")  # right of COUNT: a hidden one
        await loaded(pilot)
        sorted_by = app.settings.sort("flows")[0]
        assert sorted_by not in ("count", "signal")
        column = app.table("flows").spec.column_names().index(sorted_by)
        assert column in app.table("flows").visible_columns  # shown, with its marker
    async with make_app(batches).run_test(size=(100, 42)) as pilot:
        await loaded(pilot)
        labels = labels_of(pilot.app)
        assert {"SENDER", "TARGET", "SIGNAL", "COUNT", "PEND", "REASON"} <= set(labels)
        assert labels.count("COMM") == 2
        assert "LAST" not in labels  # the least useful go first
        assert len(labels) < len(pilot.app.table("flows").spec.columns)
        await pilot.resize_terminal(260, 42)
        await pilot.pause()
        labels = labels_of(pilot.app)
        assert len(labels) == len(pilot.app.table("flows").spec.columns)  # room again: every column back
        assert "columns when wider" not in header(pilot.app)


def test_snapshot_main_screen_100_columns(batches, snap_compare):
    assert snap_compare(make_app(batches), terminal_size=(100, 42), run_before=loaded)


def test_snapshot_main_screen_160x45(batches, snap_compare):
    assert snap_compare(make_app(batches), terminal_size=(160, 45), run_before=loaded)


def test_snapshot_main_screen_80x24(batches, snap_compare):
    assert snap_compare(make_app(batches), terminal_size=(80, 24), run_before=loaded)


def test_snapshot_help_80x24(batches, snap_compare):
    async def open_help(pilot):
        await loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(make_app(batches), terminal_size=(80, 24), run_before=open_help)


@pytest.fixture(scope="module")
def children():
    """A supervisor's 30 one-off children of one name (/bin/true), recorded by scripts/screenshots.py."""
    _, batches = read_recording(CHILDREN)
    return batches


async def test_one_off_children_fold_into_one_row_and_unfold(children):
    """30 children of one name each send their parent one SIGCHLD: one row "30 procs", counts
    summed, its drill-down lists the 30; f shows them one row each, f again folds them back."""
    app = SigtopApp(ReplaySource(copy.deepcopy(children), speed=0, name="children.jsonl"))
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        rows = visible(app)
        child_rows = [r for r in app.model.flows.values() if r.key.via == "child" and r.sender_comm == "true"]
        assert len(child_rows) == 30  # the model keeps every child's row
        folded = [r for r in rows if r[0] == "30 procs"]
        assert len(folded) == 1
        assert folded[0][1] == "true"
        assert folded[0][4] == "SIGCHLD"
        assert folded[0][5] == str(sum(r.count for r in child_rows)) == "30"
        assert len(rows) == len(app.model.flows) - 29
        app.table("flows").move_cursor(row=rows.index(folded[0]))
        await pilot.press("enter")
        await detail_shown(pilot)
        assert app.screen.query_one(VerticalScroll).scroll_y == 0  # opened at its title
        senders = app.screen.query_one("#detail-table-0", DataTable)
        assert senders.row_count == 30
        assert {str(senders.get_row_at(i)[0]) for i in range(30)} == {str(r.key.sender_pid) for r in child_rows}
        await pilot.press("escape", "f")
        await loaded(pilot)
        rows = visible(app)
        assert len(rows) == len(app.model.flows)
        assert sum(1 for r in rows if r[1] == "true") == 30
        await pilot.press("f")
        await loaded(pilot)
        assert [r[0] for r in visible(app)].count("30 procs") == 1
        await pilot.press("enter")
        await detail_shown(pilot)
        await pilot.press("2")  # a table's key in a drill-down: back, and that table
        await pilot.pause()
        assert app.screen is app._main
        assert app.active == "signalfd"


async def test_help_fits_small_terminals_and_scrolls(batches):
    """At 60x20 the help box is inside the screen, opens at its top, and scrolls to its end; it
    names every key of the app and the header's red words."""
    app = make_app(batches)
    async with app.run_test(size=(60, 20)) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        box = app.screen.query_one("#help")
        assert box.region.right <= 60
        assert box.region.bottom <= 20
        assert box.scroll_y == 0
        text = str(box.query_one(Static).render())
        for binding in app.BINDINGS:
            if binding.key not in ("ctrl+c", "escape"):  # Quit again; Esc: its own line
                assert (binding.tooltip or binding.description) in text, binding
        for word in ("ctrl+p", "pgdn", "UNCOUNTED", "traced", "lost n details", "Fold"):
            assert word in text, word
        await pilot.press("end")
        await pilot.pause()
        assert box.scroll_y == box.max_scroll_y > 0


async def test_header_shows_every_loss(batches):
    """Details the kernel lost are lost, in red; those sigtop's own decode budget skipped are said as
    sampling (a choice, with every count whole); skipped probe runs show in red."""
    lossy = copy.deepcopy(batches)
    last = lossy[-1]
    last.stats.events_lost, last.stats.events_dropped = 3, 392_857
    last.stats.program_misses, last.stats.signals_missed = 7, 5
    last.program_misses = {"signal_generate": 5, "sys_enter_kill": 2}
    last.stats.threads_full = 4
    last.stats.pending_full, last.stats.exits_full = 6, 1
    last.stats.taken_unqueued = 3  # taken, never seen generated: in no count either
    app = SigtopApp(ReplaySource(lossy, speed=0, name="recording.jsonl"))
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        text = header(app)
        assert "UNCOUNTED 8 signals" in text
        assert "missed 2 probe runs" in text
        assert "lost 3 details" in text
        kept = app.model.events_received
        assert kept > 0
        assert f"details sampled 1 in {round((kept + 392_857) / kept):,}" in text
        assert "THREAD MAP FULL: 4 not counted" in text
        assert "FATES NOT FOLLOWED: 7" in text


async def palette(pilot, text: str) -> None:
    """Run a command from the palette, as typed."""
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*text)
    await pilot.pause(0.3)
    await pilot.press("enter")
    await loaded(pilot)


async def test_the_palette_holds_sigtops_commands(batches, tmp_path, monkeypatch):
    """ctrl+p finds sigtop's commands by name: a filter preset, a sort by any column (also a hidden
    one), a table; saving the view writes the JSON that batch writes, of what is shown."""
    monkeypatch.chdir(tmp_path)
    app = make_app(batches)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot)
        await palette(pilot, "only failures")
        assert app.flow_filter.states == {"failed"}
        assert "filter is:failed" in header(app)
        failed = [r for r in app.model.flows.values() if r.failed]
        assert failed
        assert len(visible(app)) == len(failed)
        await palette(pilot, "Clear the filter")
        assert not app.flow_filter
        await palette(pilot, "sort by P99")
        assert app.settings.sort("flows") == ("p99", True)
        await palette(pilot, "save the view as JSON")
        for _ in range(100):
            saved = list(tmp_path.glob("sigtop-view-*.json"))
            if saved:
                break
            await pilot.pause(0.05)
        (path,) = saved
        doc = json.loads(path.read_text())
        assert len(doc["flows"]) == len(app.model.flows)
        await palette(pilot, "show the signalfd table")
        assert app.active == "signalfd"


async def test_a_streamed_recording_shows_the_same_rows_and_a_bad_line_ends_it(batches, tmp_path):
    """The app over a recording read as it plays (large ones are): the same rows as read whole;
    one with a corrupt line shows what came before, then ends with that line named."""
    whole = make_app(batches)
    async with whole.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        expected = sorted(map(tuple, visible(whole)))
    app = SigtopApp(ReplaySource.stream(str(RECORDING)))
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(400):
            await loaded(pilot)
            if app.model.finished:
                break
            await pilot.pause(0.01)
        await loaded(pilot)
        assert sorted(map(tuple, visible(app))) == expected
    lines = RECORDING.read_text().splitlines(keepends=True)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(lines[:3]) + "{not json\n" + "".join(lines[3:]))
    app = SigtopApp(ReplaySource.stream(str(broken)))
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(400):
            await pilot.pause(0.01)
            if app.failure:
                break
    assert app.failure.startswith(f"{broken}:4: corrupt line")


async def test_g_groups_the_flows_by_sender_name_target_and_signal(batches):
    """g sums the flows by sender name, then by target, then by signal, then shows every row
    again; each group's count is its rows' sum, and the header says what it is grouped by."""
    app = make_app(batches)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        flows = list(app.model.flows.values())
        count = column_index(app, "COUNT")
        by_sender = Counter()
        by_signal = Counter()
        for r in flows:
            by_sender[r.sender_comm if r.key.sender_pid else "[kernel]"] += r.count
            by_signal[r.key.sig] += r.count
        await pilot.press("g")
        await loaded(pilot)
        assert "grouped by sender" in header(app)
        rows = visible(app)
        assert len(rows) == len(by_sender)
        assert sorted(int(r[count].replace(",", "")) for r in rows) == sorted(by_sender.values())
        await pilot.press("g")
        await loaded(pilot)
        assert "grouped by target" in header(app)
        assert len(visible(app)) == len({(r.key.target_pid, r.key.target_gen, r.key.ns_of, r.key.pidfd) for r in flows})
        await pilot.press("g")
        await loaded(pilot)
        rows = visible(app)
        assert len(rows) == len(by_signal)
        assert sorted(int(r[count].replace(",", "")) for r in rows) == sorted(by_signal.values())
        app.table("flows").move_cursor(row=0)
        await pilot.press("enter")
        await detail_shown(pilot)
        members = app.screen.query_one("#detail-table-0", DataTable)
        assert members.row_count == sum(1 for r in flows if r.key.sig == max(by_signal, key=by_signal.__getitem__))
        await pilot.press("escape", "g")
        await loaded(pilot)
        assert "grouped" not in header(app)
        assert len(visible(app)) == len(flows)


def total_after(batches, n: int) -> int:
    """The signals counted once the first n batches are folded (a fresh model: the truth a move must match)."""
    from sigtop.model import SignalModel

    model = SignalModel()
    for batch in copy.deepcopy(batches[:n]):
        model.apply(batch)
    return model.total_signals


async def moved_to(pilot, n: int) -> None:
    """Until the replay has delivered n batches and the screen shows where it is."""
    source = pilot.app.source
    for _ in range(500):
        await pilot.pause(0.01)
        if source.position == n and f"interval {n}/" in header(pilot.app):
            await loaded(pilot)
            return
    raise AssertionError(f"the replay stayed at {source.position}: {header(pilot.app)}")


async def test_a_replay_steps_back_and_on_and_seeks_to_a_time(batches):
    """[ and ] move a replay one interval, t to a time; the counts are those of a fresh fold of the
    recording up to there (a move back folds it again from the start); a bad time is said, not taken."""
    import time as clock

    n = len(batches) - 1  # the last is the recording's end, with counts of its own
    app = make_app(batches)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert app.model.total_signals == total_after(batches, len(batches))
        await pilot.press("left_square_bracket")
        await moved_to(pilot, len(batches) - 1)
        assert "PAUSED" in header(app)
        assert app.model.total_signals == total_after(batches, len(batches) - 1)
        for _ in range(3):
            await pilot.press("left_square_bracket")
        await moved_to(pilot, len(batches) - 4)
        assert app.model.total_signals == total_after(batches, len(batches) - 4)
        await pilot.press("right_square_bracket")
        await moved_to(pilot, len(batches) - 3)
        assert app.model.total_signals == total_after(batches, len(batches) - 3)
        # To a time: the batches recorded at or before it.
        target = int(batches[n - 1].ts)
        await pilot.press("t")
        await pilot.pause()
        box = app.screen.query_one("#seek-to", Input)
        box.value = clock.strftime("%H:%M:%S", clock.localtime(target))
        await pilot.press("enter")
        expected = sum(1 for b in batches if b.ts <= target)
        await moved_to(pilot, expected)
        assert app.model.total_signals == total_after(batches, expected)
        # A time that is none: asked again, saying why; Esc leaves the replay where it was.
        await pilot.press("t")
        await pilot.pause()
        app.screen.query_one("#seek-to", Input).value = "25:61"
        await pilot.press("enter")
        await pilot.pause()
        assert "not a time of day" in str(app.screen.query_one(Static).render())
        await pilot.press("escape")
        await pilot.pause()
        assert app.source.position == expected
        # Unpaused, it plays on to the end.
        await pilot.press("space")
        for _ in range(500):
            await pilot.pause(0.01)
            if app.source.position == len(batches):
                break
        await loaded(pilot)
        assert app.model.total_signals == total_after(batches, len(batches))


async def test_a_live_view_does_not_step():
    """[ ] and t are a replay's; a live source says so and nothing moves (no kernel needed to see it)."""
    from sigtop.ui.app import SigtopApp as App

    class Live(ReplaySource):
        live = True

    app = App(Live([], speed=0, name="live"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert not app.paused


async def test_the_tree_puts_each_senders_flows_under_its_parents(batches):
    """T (htop's F5): the recording's workload (26529) started the others; their flows come right
    after its own, one level in (└─), and T again gives the sorted list back."""
    app = make_app(batches)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        listed = visible(app)
        await pilot.press("T")
        await loaded(pilot)
        assert "tree (T)" in header(app)
        sender, comm = column_index(app, "SENDER"), column_index(app, "COMM")
        tree = visible(app)
        assert tree != listed  # reordered ...
        assert sorted(r[sender] for r in tree) == sorted(r[sender] for r in listed)  # ... the same rows
        senders = [r[sender].strip() for r in tree]
        parent_rows = [i for i, s in enumerate(senders) if s == "26529"]
        children = {"26530", "26531", "26532", "26533", "26534", "26535"} & set(senders)
        assert children
        # The parent's rows, then each child's, drawn one level in, before any other root's rows.
        first_child = min(i for i, s in enumerate(senders) if s in children)
        assert max(parent_rows) < first_child
        block = senders[parent_rows[0] : parent_rows[0] + len(parent_rows) + sum(senders.count(c) for c in children)]
        assert set(block) == {"26529", *children}
        for i, s in enumerate(senders):
            if s in children:
                assert tree[i][comm].startswith("└─ "), tree[i]
            if s == "26529":
                assert not tree[i][comm].startswith("└"), tree[i]
        await pilot.press("T")
        await loaded(pilot)
        assert visible(app) == listed
        assert "tree (T)" not in header(app)


async def test_wide_shows_every_column_and_scrolls_sideways_at_80x24(batches):
    """At 80x24 the lowest-priority columns are hidden and counted; w shows every one at full
    width, the sender kept in view while ←/→ scroll the rest; w again fits them back."""
    app = make_app(batches)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        table = app.table("flows")
        every = [i for i in range(len(table.spec.columns)) if i not in table.hidden]
        fitted = list(table.visible_columns)
        assert len(fitted) < len(every)
        await pilot.press("w")
        await pilot.pause()
        assert table.visible_columns == every
        assert table.fixed_columns == 2
        for _ in range(10):
            await pilot.press("right")
        await pilot.pause()
        assert table.scroll_x > 0
        await pilot.press("w")
        await pilot.pause()
        assert table.visible_columns == fitted
        assert table.scroll_x == 0


async def test_a_streamed_replay_steps_back_by_reading_its_file_again(batches):
    """A streamed recording (read as played) moves back by reading the file again from its start:
    the counts are those of a fresh fold up to there, as for one read whole."""
    app = SigtopApp(ReplaySource.stream(str(RECORDING), speed=0))
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert app.model.total_signals == total_after(batches, len(batches))
        for _ in range(2):
            await pilot.press("left_square_bracket")
        await moved_to(pilot, len(batches) - 2)
        assert app.model.total_signals == total_after(batches, len(batches) - 2)
        await pilot.press("right_square_bracket")
        await moved_to(pilot, len(batches) - 1)
        assert app.model.total_signals == total_after(batches, len(batches) - 1)


async def test_only_this_container_filters_by_the_row_under_the_cursor(batches):
    """The palette's "only this container" takes the container of the row under the cursor (its
    target's, else its sender's), at 80x24 too, where the CONTAINER column does not fit. The
    recording is the real one, with its top row's target placed in a podman container's cgroup."""
    from sigtop.containers import container_of

    app = make_app(batches)
    async with app.run_test(size=(160, 45)) as pilot:
        await loaded(pilot)
        top = rows_by_key(app)[app.query_one("#table-flows", DataTable).cursor_key()]
        assert app.cursor_container() == ""  # on the host
    cgroup = "/machine.slice/libpod-" + "4f2a" * 16 + ".scope"
    label = container_of(cgroup).label
    moved = copy.deepcopy(batches)
    for batch in moved:
        for proc in batch.procs:
            if proc.pid == top.key.target_pid:
                proc.cgroup = cgroup
    app = SigtopApp(ReplaySource(moved, speed=0, name="recording.jsonl"))
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        assert app.cursor_container() == label
        await palette(pilot, "only this container")
        assert f"filter ctr:{label}" in header(app)
        shown = [rows_by_key(app)[k] for k in app.snapshot.table.keys]
        assert shown
        assert all(label in (r.sender_container, r.target_container) for r in shown)
        assert len(shown) < len(app.model.flows)
