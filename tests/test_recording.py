"""Recordings: written safely (no symlinks, no clobbering, whole lines even on a full disk),
read defensively (every value checked at the boundary, a cut last line left out)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from sigtop.codec import batch_json
from sigtop.model import SignalModel
from sigtop.recording import RecordingError, RecordingFullError, RecordingWriter, open_output, read_recording
from tests.conftest import RECORDING
from tests.test_cli import assert_one_line_error, run

REAL_LINES = RECORDING.read_text().splitlines(keepends=True)


def test_record_never_overwrites_an_existing_file(tmp_path):
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    assert_one_line_error(run("record", "-o", str(precious), "--duration", "1"), "exists: not overwriting it")
    assert precious.read_text() == "keep me\n"


@pytest.mark.parametrize("force", [False, True])
def test_record_never_writes_through_a_symlink(tmp_path, force):
    """The attack: a link planted where root will record, pointing at a file root owns."""
    target = tmp_path / "shadow"
    target.write_text("root's\n")
    link = tmp_path / "capture.jsonl"
    link.symlink_to(target)
    args = ["record", "-o", str(link), "--duration", "1", *(["--force"] if force else [])]
    assert_one_line_error(run(*args), "symbolic link" if force else "exists")
    assert target.read_text() == "root's\n"
    dangling = tmp_path / "dangling.jsonl"
    dangling.symlink_to(tmp_path / "not-yet")
    assert_one_line_error(run("record", "-o", str(dangling), "--duration", "1"), "exists")
    assert not (tmp_path / "not-yet").exists()


def test_force_replaces_only_a_regular_file(tmp_path):
    old = tmp_path / "old.jsonl"
    old.write_text("x" * 1000)
    old.chmod(0o644)  # readable by all: the recording replacing it must not be
    fd = open_output(str(old), force=True)
    try:
        assert os.fstat(fd).st_size == 0
        assert os.fstat(fd).st_mode & 0o777 == 0o600  # a recording shows every command line
    finally:
        os.close(fd)
    with pytest.raises(RecordingError, match="not a regular file"):
        open_output("/dev/null", force=True)
    fresh = tmp_path / "fresh.jsonl"
    os.close(open_output(str(fresh)))
    assert fresh.stat().st_mode & 0o777 == 0o600  # a recording shows every command line


@pytest.fixture
def tiny_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_leaves_a_file_that_replays_whole(tiny_disk):
    from sigtop.codec import batch_from_json

    batches = [batch_from_json(json.loads(line)) for line in REAL_LINES[1:]]
    path = tiny_disk / "rec.jsonl"
    fd = open_output(str(path))
    try:
        writer = RecordingWriter(fd, {"interval_s": 1}, name=str(path))

        def fill() -> None:
            for i in range(10_000):
                writer.write(batches[i % len(batches)])

        with pytest.raises(RecordingFullError, match="No space left"):
            fill()
    finally:
        os.close(fd)
    written = writer.batches
    assert written > 3
    assert path.read_bytes().endswith(b"\n")
    notes: list[str] = []
    _head, replayed = read_recording(path, notes)
    assert (len(replayed), notes) == (written, [])


def test_a_crash_mid_line_replays_every_whole_batch(tmp_path):
    path = tmp_path / "cut.jsonl"
    path.write_text("".join(REAL_LINES) + REAL_LINES[-1][:100])  # the last write never finished
    notes: list[str] = []
    _head, batches = read_recording(path, notes)
    assert len(batches) == len(REAL_LINES) - 1
    assert notes == [f"{path}:{len(REAL_LINES) + 1}: the last line was cut off; replaying {len(batches)} batches"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda b: b["flows"][0].update(count=None), "batch.flows[0].count: None is not an integer"),
        (lambda b: b["flows"][0]["key"].update(result=9), "batch.flows[0].key.result: 9 is not an integer in [0, 7)"),
        (lambda b: b.update(ts=1e300), "batch.ts: 1e+300 is not a number"),
        (lambda b: b["procs"][0].update(comm=["a", "list"]), "batch.procs[0].comm: ['a', 'list'] is not a string"),
        (lambda b: b["procs"][0].update(parents=[[1]]), "not a (pid, comm) pair"),
        (lambda b: b.update(flows={"not": "a list"}), "batch.flows: {'not': 'a list'} is not a list"),
        (lambda b: b["stats"].update(events_lost=-1), "batch.stats.events_lost"),
        (lambda b: b["events"][0].update(latency_ns="soon"), "batch.events[0].latency_ns"),
    ],
)
def test_bad_values_name_their_line_and_field(tmp_path, change, needle):
    doc = json.loads(REAL_LINES[1])
    if not doc["events"]:
        doc["events"] = next(json.loads(line) for line in REAL_LINES[2:] if json.loads(line)["events"])["events"]
    change(doc)
    path = tmp_path / "bad.jsonl"
    path.write_text(REAL_LINES[0] + json.dumps(doc) + "\n")
    with pytest.raises(RecordingError) as caught:
        read_recording(path)
    assert str(caught.value).startswith(f"{path}:2: ")
    assert needle in str(caught.value)


def test_ids_from_a_newer_sigtop_are_shown_not_fatal(tmp_path):
    from sigtop.export.report import to_json
    from sigtop.model import SignalModel

    doc = json.loads(REAL_LINES[1])
    doc["flows"][0]["key"]["syscall"] = 42  # a send syscall this version does not know
    doc["flows"][0]["key"]["sender_pid"] = 4242
    doc["flows"][0]["brand_new_field"] = {"from": "the future"}
    path = tmp_path / "newer.jsonl"
    path.write_text(REAL_LINES[0] + json.dumps(doc) + "\n")
    _head, batches = read_recording(path)
    model = SignalModel()
    model.apply(batches[0])
    assert "syscall#42" in {f["syscall"] for f in to_json(model)["flows"]}


def test_replay_of_a_cut_recording_says_so_without_a_terminal(tmp_path):
    """The note first; then, with no terminal to draw on, one line and exit 2 (never a hang)."""
    path = tmp_path / "cut.jsonl"
    path.write_text(REAL_LINES[0] + REAL_LINES[1][:50])
    result = run("replay", str(path), stdin=subprocess.DEVNULL)
    lines = result.stderr.strip().splitlines()
    assert lines[0].endswith("the last line was cut off; replaying 0 batches")
    assert lines[1] == "sigtop: the live view needs a terminal: use `sigtop batch` or `sigtop record` without one"
    assert result.returncode == 2


def test_streamed_lines_read_back_as_the_same_batches(tmp_path):
    _head, batches = read_recording(RECORDING)
    path = tmp_path / "again.jsonl"
    fd = open_output(str(path))
    try:
        writer = RecordingWriter(fd, {"interval_s": 1}, name=str(path))
        for batch in batches:
            writer.write(batch)
    finally:
        os.close(fd)
    _head, again = read_recording(path)
    assert again == batches


def test_a_storm_batch_is_written_without_holding_it_whole(tmp_path):
    """A storm-sized batch (40,000 events, a 10 MB line): written in chunks, never held whole."""
    import tracemalloc

    from sigtop.names import EventKind
    from sigtop.wire import Batch, SignalEvent

    events = [
        SignalEvent(1.0 + i / 1e6, int(EventKind.generate), 100, 100, 200, 200, 12, 0, 1, 0, 1) for i in range(40_000)
    ]
    path = tmp_path / "storm.jsonl"
    fd = open_output(str(path))
    try:
        writer = RecordingWriter(fd, {"interval_s": 1}, name=str(path))
        tracemalloc.start()
        writer.write(Batch(ts=2.0, interval_s=1.0, events=events))
        _now, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        os.close(fd)
    assert path.stat().st_size > 10_000_000
    assert peak < 8_000_000  # a few chunks, never the line
    _head, (batch,) = read_recording(path)
    assert len(batch.events) == 40_000


def test_a_recording_made_before_events_carried_their_flow_key_replays_whole():
    """tests/data/recording.jsonl was made before struct event carried its flow key: every one of
    its flow events still finds the row it was counted in (the codec gives it the key, once)."""
    from collections import Counter

    from sigtop.model import EVENTS_PER_ROW, SignalModel

    assert all('"flow"' not in line for line in REAL_LINES[1:])  # an old recording indeed
    _head, batches = read_recording(RECORDING)
    model = SignalModel()
    per_row: Counter = Counter()
    for batch in batches:
        model.apply(batch)
        for event in batch.events:
            if event.kind in (1, 2):
                assert event.flow is not None
                per_row[model.row_key(event.flow)] += 1
    assert per_row
    assert set(per_row) <= set(model.flows)
    for key, n in per_row.items():
        assert len(model.flows[key].events) == min(n, EVENTS_PER_ROW), key


def test_a_full_disk_keeps_the_counts_of_every_batch_that_fits_without_their_events(tiny_disk):
    """The counts need little room: when batches' events no longer fit, their counts still go
    in (each batch says its events were dropped), the recording goes on, takes events again
    once there is room, and ends only when not even a batch's counts fit."""
    from sigtop.codec import batch_from_json

    batches = [batch_from_json(json.loads(line)) for line in REAL_LINES[1:]]
    big = max(batches, key=lambda b: len(b.events))
    assert len(big.events) > 10
    path = tiny_disk / "rec.jsonl"
    fd = open_output(str(path))
    try:
        writer = RecordingWriter(fd, {"interval_s": 1}, name=str(path))
        filler = tiny_disk / "filler"
        # Leave room for less than the whole batch but more than three batches' counts.
        full_line = len(json.dumps(batch_json(big), separators=(",", ":")))
        counts_line = len(json.dumps(batch_json(dataclasses.replace(big, events=[])), separators=(",", ":")))
        room = 3 * counts_line + (8 << 10)
        assert room + 4096 < full_line  # the recording's batch fits the arithmetic
        free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
        filler.write_bytes(b"\0" * (free - room))
        for _ in range(3):
            writer.write(big)  # no error: kept, counts only
        assert (writer.batches, writer.counts_only, writer.events_not_written) == (3, 3, 3 * len(big.events))
        assert writer.shortfall() == (
            f"{path}: No space left on device: 3 of 3 batches kept their counts without their "
            f"{3 * len(big.events):,} events (each batch says so in events_dropped)"
        )
        filler.unlink()  # room again: the next batch is whole
        writer.write(big)
        filler.write_bytes(b"\0" * (os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize))
        with pytest.raises(RecordingFullError, match=r"after 4 batches, 3 of them with their counts only; the file"):
            writer.write(big)  # not even the counts: the end
    finally:
        os.close(fd)
    _head, replayed = read_recording(path)
    assert len(replayed) == 4
    for kept in replayed[:3]:
        assert kept.events == []
        assert kept.stats.events_dropped == big.stats.events_dropped + len(big.events)
        assert [f.count for f in kept.flows] == [f.count for f in big.flows]
    assert len(replayed[3].events) == len(big.events)


def test_record_says_what_a_full_disk_cost_and_exits_1(tiny_disk):
    """The command's end: counts kept without events is said on stderr, exit status 1 (a script
    must not take the recording as whole)."""
    free = os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize
    # Room for the recording's counts (48 KiB) but not for its first batch's events (106 KiB).
    (tiny_disk / "filler").write_bytes(b"\0" * (free - (64 << 10)))
    path = tiny_disk / "rec.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "sigtop.cli", "record", "-o", str(path), "--from", str(RECORDING)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"sigtop: {path}: No space left on device: "), result.stderr
    assert "batches kept their counts without their" in last
    _head, replayed = read_recording(path)
    _head, whole = read_recording(RECORDING)
    assert [f.count for b in replayed for f in b.flows] == [f.count for b in whole for f in b.flows]  # every count
    assert sum(b.stats.events_dropped for b in replayed) > 0


def test_a_disk_that_takes_nothing_fails_before_attaching_and_leaves_no_file(tiny_disk):
    (tiny_disk / "filler").write_bytes(b"\0" * (os.statvfs(tiny_disk).f_bavail * os.statvfs(tiny_disk).f_frsize))
    path = tiny_disk / "rec.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "sigtop.cli", "record", "-o", str(path), "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"sigtop: cannot record to {path}: no space (or quota) left; nothing traced"
    ]
    assert not path.exists()


async def _play_all(source) -> list:
    got: list = []
    loop = asyncio.get_running_loop()
    source.start(loop, got.append)
    for _ in range(2000):
        if got and got[-1].final:
            break
        await asyncio.sleep(0.005)
    source.stop()
    return got


def test_a_streamed_recording_plays_the_same_batches_as_one_read_whole(tmp_path):
    """Played as read (a large recording's way: its first screen at once, memory bounded by the
    view), the real recording gives the same batches, and a model the same counts; a corrupt line
    ends it with that line named, after every batch before it."""
    from sigtop.sources.replay import ReplaySource

    _head, whole = read_recording(RECORDING)
    streamed = asyncio.run(_play_all(ReplaySource.stream(str(RECORDING))))
    assert [batch_json(b) for b in streamed[: len(whole)]] == [batch_json(b) for b in whole]
    assert streamed[-1].final
    a, b = SignalModel(), SignalModel()
    for batch in whole:
        a.apply(batch)
    for batch in streamed:
        b.apply(batch)
    assert (a.total_signals, len(a.flows)) == (b.total_signals, len(b.flows))

    lines = RECORDING.read_text().splitlines(keepends=True)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(lines[:3]) + '{"ts": "nope"}\n' + "".join(lines[3:]))
    source = ReplaySource.stream(str(broken))
    played = asyncio.run(_play_all(source))
    assert len(played) == 3  # the two batches before the bad line, then the end
    assert played[-1].final
    assert source.error.startswith(f"{broken}:4: ")
