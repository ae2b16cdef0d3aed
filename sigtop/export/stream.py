"""NDJSON for log pipelines: one JSON object per signal event, with both ends' identity.

`sigtop stream` writes a line per detail event (a generated signal, a failed
send or probe) as batches arrive, for jq, Loki, Vector or Elasticsearch.
Identity (comm, cmdline, user, cgroup, start time, namespace pids, container
or service) comes from what the source resolved in /proc, sanitised like
everything else sigtop shows.

What a pipeline may rely on (README, "The stream"):
- Nothing is lost silently. Each line has a "type": "signal" for an event;
  "loss" for an interval in which events were lost in the kernel's ring,
  dropped in user space, or dropped from the backlog; "summary" once at the
  end, with the kernel's exact count of the flow events in scope and how many
  of them have a line (also printed on stderr).
- The loss records add up: a loss record is never dropped for want of room
  (it waits beside the backlog, not in it); one the reader has not taken yet
  absorbs the next intervals' losses (its interval_s then spans them all). So
  the summary's counts are exactly the sum of the loss records written plus
  its own "not_in_loss_records": what no record could carry (lines dropped at
  the end, or a record the reader never got).
- Memory is bounded: lines wait in a backlog of at most --backlog bytes for a
  slow reader, plus at most one loss record; what does not fit is dropped and
  counted.
- It ends on time: a signal ends it within 3 s whatever the reader does (it
  stops writing ENDING_BUDGET_S after the signal, then detaches: 0.57 s with a
  stalled reader on a quiet box, up to 2 s with both cores busy), and a reader
  that goes away (`| head -1`) is noticed within a second even when no event
  comes, because the writer polls stdout for hang-up instead of finding out at
  the next write.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from sigtop.containers import container_of
from sigtop.events import EventBlock
from sigtop.lru import BoundedLRU
from sigtop.names import EventKind, Result, errno_name, printable, result_word, si_code_name, signame, syscall_name
from sigtop.selection import BatchSelection
from sigtop.wire import Batch, ProcInfo, SignalEvent

MAX_IDENTITIES = 20_000  # processes remembered for their identity (least recently seen go first)
FLOW_EVENTS = (int(EventKind.generate), int(EventKind.send_done))
DEFAULT_BACKLOG = 16 << 20  # bytes of lines waiting for a slow reader
# A write to a pipe of at most PIPE_BUF bytes, once poll() says POLLOUT, finds a free
# buffer slot and never blocks; so the writer never sits in write() while a signal waits.
PIPE_CHUNK = 4096
FILE_CHUNK = 1 << 20  # a file (or /dev/null) takes any write
TTY_CHUNK = 256  # a terminal says POLLOUT with as little as this much room (n_tty's WAKEUP_CHARS)
POLL_S = 0.2  # how often the writer looks for a hang-up while it has nothing to write
# After a signal: time to finish encoding and writing before the rest is dropped and
# counted; with detaching and the summary the stream ends in 0.57 s on a quiet box
# (up to 2 s with both cores busy: the README promises 3 s).
ENDING_BUDGET_S = 0.4


@dataclasses.dataclass(slots=True)
class Losses:
    """What did not become a line, by where it was lost."""

    events_lost: int = 0  # the kernel's ring buffer was full (the counts stay exact)
    events_dropped: int = 0  # user space fell behind (merged batches, the decode budget)
    backlog_dropped: int = 0  # lines that did not fit the backlog: the reader was too slow
    signals_missed: int = 0  # signals in no count (KernelStats.signals_uncounted)

    def any(self) -> bool:
        return any(self.as_json().values())

    def add(self, other: Losses) -> None:
        for name, value in other.as_json().items():
            setattr(self, name, getattr(self, name) + value)

    def as_json(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(slots=True)
class LossNote:
    """A loss record waiting to be written: the losses of one interval, or of several
    when the reader had not taken it before the next interval's losses came."""

    losses: Losses
    start: float  # when the first interval it covers began
    end: float  # when the last one ended

    def line(self) -> bytes:
        record = {"type": "loss", "ts": round(self.end, 6), "interval_s": round(self.end - self.start, 3)}
        return (json.dumps(record | self.losses.as_json(), separators=(",", ":")) + "\n").encode()


class EventStream:
    """Turns batches into NDJSON lines."""

    def __init__(self) -> None:
        self._procs: BoundedLRU[int, ProcInfo] = BoundedLRU(MAX_IDENTITIES)

    def identity(self, pid: int, tid: int = 0, comm: str = "") -> dict[str, Any] | None:
        """One end of a signal: pid and what /proc said of it (None for the kernel)."""
        if pid <= 0:
            return None
        info = self._procs.get(pid)
        who: dict[str, Any] = {"pid": pid}
        if tid and tid != pid:
            who["tid"] = tid
        if info is None:
            if comm:
                who["comm"] = printable(comm)
            return who
        who.update(
            comm=printable(info.comm or comm),
            cmdline=printable(info.cmdline),
            user=printable(info.user),
            cgroup=printable(info.cgroup),
            container=container_of(info.cgroup).label or None,
            started=round(info.started, 2) if info.started else None,
        )
        if len(info.nspid) > 1:
            who["nspid"] = info.nspid
        return who

    def event_json(self, e: SignalEvent) -> dict[str, Any]:
        failed = e.kind == EventKind.send_done and e.ret < 0
        if e.kind == EventKind.send_done:
            outcome = f"failed {errno_name(-e.ret)}" if failed else "probe"
        elif e.result in Result._value2member_map_:
            outcome = result_word(e.result)
        else:
            outcome = str(e.result)
        doc: dict[str, Any] = {
            "type": "signal",
            "ts": round(e.ts, 6),
            "signal": e.sig,
            "signame": signame(e.sig),
            "syscall": syscall_name(e.syscall),
            "si_code": si_code_name(e.sig, e.code),
            "result": outcome,
            "sender": self.identity(e.sender_pid, e.sender_tid, e.comm) if e.syscall else None,
            "target": self.identity(e.target_tgid or e.target_pid, e.target_pid),
        }
        if e.has_info:
            doc["si_value"] = e.info_value
        if e.spoofed:
            doc["spoofed"] = {"claimed_si_pid": e.info_pid, "claimed_si_uid": e.info_uid}
        if e.ns_local:
            doc["target_in_sender_namespace"] = True
        return doc

    def counted(self, batch: Batch) -> int:
        """The kernel's exact count of the batch's flow events (each has an event, unless lost)."""
        return sum(f.count for f in batch.flows)

    def lines(self, batch: Batch, deadline: float | None = None) -> tuple[list[str], int]:
        """The batch's flow events as lines, and how many were left unencoded at the deadline.

        Which records are flow events is read from their kinds without decoding them, so
        that past the deadline what is left is counted exactly at almost no cost."""
        for proc in batch.procs:
            self._procs.put(proc.pid, proc)
        events = batch.events
        kinds = events.kinds() if isinstance(events, EventBlock) else bytes(int(e.kind) for e in events)
        flow_records = [i for i, kind in enumerate(kinds) if kind in FLOW_EVENTS]
        out: list[str] = []
        for n, i in enumerate(flow_records):
            if deadline is not None and n % 256 == 0 and time.monotonic() > deadline:
                return out, len(flow_records) - n
            out.append(json.dumps(self.event_json(events[i]), separators=(",", ":")))
        return out, 0


@dataclasses.dataclass(frozen=True, slots=True)
class Tally:
    """What a PipeWriter wrote and dropped."""

    lines_written: int
    signals_written: int
    signals_dropped: int
    reported: Losses  # the sums of the loss records written whole
    gone: bool


class PipeWriter:
    """Writes lines to a file descriptor from a thread, never blocking the caller.

    The backlog is capped in bytes; a line that does not fit is counted, not kept.
    The thread sleeps in poll() on the output and a wake-up pipe: it writes only
    what poll() says fits (so close() is honoured at once), and it sees a reader
    that closed its end (POLLERR, EPIPE) while idle, and calls on_gone.

    Lines are signal lines (counted: accepted, dropped, written) or loss records.
    A loss record is never dropped for want of room: it waits in the queue (in
    order, after the lines queued before it) but outside the byte cap, and at most
    one does, since losses that come while one waits are merged into it. What the
    records written said is summed in `reported`, so that the summary can say
    exactly what no record carried."""

    def __init__(self, fd: int, backlog_bytes: int, on_gone: Callable[[], None]) -> None:
        self.fd = fd
        self.backlog_bytes = backlog_bytes
        self.on_gone = on_gone
        self.gone = False
        self.lines_written = 0
        self.signals_written = 0
        self.signals_dropped = 0  # did not fit the backlog, or the reader was gone
        self.reported = Losses()  # what the loss records written (whole) said
        self._signals_accepted = 0
        self._pending: deque[bytes | LossNote] = deque()  # signal lines, and loss records
        self._pending_bytes = 0  # of the signal lines: the backlog
        self._note: LossNote | None = None  # the loss record queued and not yet taken to write
        self._lock = threading.Lock()
        self._closing = False  # write what is queued, then end
        self._abandon = False  # end now
        self._mid_line = False  # the last write ended inside a line
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # A pipe, socket or terminal says when a write fits; a regular file always does.
        mode = os.fstat(fd).st_mode
        self._chunk = TTY_CHUNK if os.isatty(fd) else PIPE_CHUNK
        if stat.S_ISREG(mode) or (stat.S_ISCHR(mode) and not os.isatty(fd)):  # a file, /dev/null
            self._chunk = FILE_CHUNK
        self._thread = threading.Thread(target=self._run, name="sigtop-stream-writer", daemon=True)
        self._thread.start()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # already awake
            os.write(self._wake_w, b"x")

    def put(self, lines: list[str]) -> int:
        """Queue signal lines (each gets its newline); return how many did not fit the backlog."""
        dropped = 0
        with self._lock:
            for line in lines:
                data = (line + "\n").encode()
                if self.gone or self._pending_bytes + len(data) > self.backlog_bytes:
                    dropped += 1
                    continue
                self._pending.append(data)
                self._pending_bytes += len(data)
            self._signals_accepted += len(lines) - dropped
            self.signals_dropped += dropped
        self._wake()
        return dropped

    def put_loss(self, losses: Losses, ts: float, interval_s: float) -> None:
        """Queue a loss record for the interval that ended at ts, or merge it into the one
        still waiting: never dropped, and never more than one waiting (the backlog stays bounded)."""
        with self._lock:
            if self.gone:  # nothing more reaches the reader: the summary says it all
                return
            if self._note is None:
                self._note = LossNote(Losses(), ts - interval_s, ts)
                self._pending.append(self._note)
            self._note.losses.add(losses)
            self._note.start = min(self._note.start, ts - interval_s)
            self._note.end = max(self._note.end, ts)
        self._wake()

    def close(self, deadline: float) -> None:
        """Write what is queued until the deadline; what is left is counted as dropped."""
        with self._lock:
            self._closing = True
        self._wake()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._abandon = True
        self._wake()
        self._thread.join(POLL_S)
        if not self._thread.is_alive():  # (a thread still in poll() keeps its descriptors)
            os.close(self._wake_w)
            os.close(self._wake_r)
        with self._lock:
            self._drop_pending()

    def _drop_pending(self) -> None:
        """(Under the lock.) What was accepted and will not be written counts as dropped."""
        self._pending.clear()
        self._pending_bytes = 0
        self._note = None
        self.signals_dropped += self._signals_accepted - self.signals_written
        self._signals_accepted = self.signals_written

    def tally(self) -> Tally:
        """The counts at one instant (a writer thread still in a write may yet add to them)."""
        with self._lock:
            return Tally(
                self.lines_written,
                self.signals_written,
                self.signals_dropped,
                Losses(**self.reported.as_json()),
                self.gone,
            )

    def write_now(self, line: str) -> bool:
        """One last short line (the summary), only if it can be written without waiting."""
        if self.gone or self._thread.is_alive():
            return False
        poller = select.poll()
        poller.register(self.fd, select.POLLOUT)
        ready = poller.poll(0)
        if not ready or ready[0][1] != select.POLLOUT:
            return False
        try:
            # After a line cut short by the deadline, the summary still starts a line of its own.
            os.write(self.fd, (("\n" if self._mid_line else "") + line + "\n").encode())
        except OSError:
            return False
        return True

    def _hang_up(self) -> None:
        with self._lock:
            already, self.gone = self.gone, True
            self._drop_pending()
        if not already:
            self.on_gone()

    def _take_chunk(self) -> tuple[bytes, deque[tuple[int, Losses | None]]]:
        """(Under the lock.) As many queued lines as one write may take (at least one), and
        each one's length and, for a loss record, its losses: fewer, larger writes."""
        taken: list[bytes] = []
        lines: deque[tuple[int, Losses | None]] = deque()
        size = 0
        while self._pending:
            entry = self._pending[0]
            data = entry if isinstance(entry, bytes) else entry.line()
            if taken and size + len(data) > self._chunk:
                break
            self._pending.popleft()
            if isinstance(entry, bytes):
                self._pending_bytes -= len(data)
                lines.append((len(data), None))
            else:  # taken: losses from now on go into a record of their own
                self._note = None
                lines.append((len(data), entry.losses))
            taken.append(data)
            size += len(data)
        return b"".join(taken), lines

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        buf = b""
        lines: deque[tuple[int, Losses | None]] = deque()  # the lines buf holds: length (left), a record's losses
        try:
            while True:
                with self._lock:
                    if self._abandon or self.gone:
                        return
                    if not buf and self._pending:
                        buf, lines = self._take_chunk()
                    if not buf and self._closing:
                        return
                # Idle, only hang-ups are asked for (POLLERR and POLLHUP always are).
                poller.register(self.fd, select.POLLOUT if buf else 0)
                for fd, ev in poller.poll(POLL_S * 1000):
                    if fd == self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 512)
                    elif ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                        self._hang_up()
                        return
                    elif ev & select.POLLOUT and buf:
                        n = os.write(self.fd, buf[: self._chunk])
                        buf = buf[n:]
                        with self._lock:
                            while lines and n >= lines[0][0]:
                                length, losses = lines.popleft()
                                n -= length
                                self.lines_written += 1
                                if losses is None:
                                    self.signals_written += 1
                                else:
                                    self.reported.add(losses)
                            if n:  # the first line left is partly out
                                lines[0] = (lines[0][0] - n, lines[0][1])
                            self._mid_line = n > 0
        except BrokenPipeError:
            self._hang_up()
        except OSError as e:
            print(f"sigtop: stream: cannot write: {e.strerror}", file=sys.stderr)
            self._hang_up()


class StreamSink:
    """The stream as a sink of the runner: batches in, lines and loss records out, on time."""

    def __init__(self, fd: int, selection: BatchSelection | None = None, backlog_bytes: int = DEFAULT_BACKLOG) -> None:
        # What is in scope of each batch: the one selection the tables use (sigtop.selection).
        self.selection = selection
        self.events = EventStream()
        self._stop: Callable[[], None] = lambda: None
        self.writer = PipeWriter(fd, backlog_bytes, self._reader_gone)
        self.total = Losses()  # backlog drops are the writer's to count (it knows what it wrote)
        self.counted = 0  # the kernel's count of flow events in scope
        self._deadline: float | None = None

    @property
    def reader_gone(self) -> bool:
        return self.writer.gone

    def start(self, stop: Callable[[], None]) -> None:
        self._stop = stop

    def _reader_gone(self) -> None:
        self._stop()

    def stopping(self) -> None:
        """A signal, the duration, or the reader ended the run: what is left must fit the budget."""
        if self._deadline is None:
            self._deadline = time.monotonic() + ENDING_BUDGET_S

    def write(self, batch: Batch) -> None:
        if self.selection is not None:
            batch = self.selection.select(batch)
        lines, unencoded = self.events.lines(batch, self._deadline)
        self.counted += self.events.counted(batch)
        lost = Losses(
            events_lost=batch.stats.events_lost,
            events_dropped=batch.stats.events_dropped + unencoded,
            backlog_dropped=self.writer.put(lines),
            signals_missed=batch.stats.signals_uncounted,
        )
        if lost.any():
            self.total.add(lost)
            self.writer.put_loss(lost, batch.ts, batch.interval_s)

    def close(self) -> dict[str, Any]:
        """Finish writing within the budget; the summary goes to the stream (if it can) and is returned.

        Its counts are the loss records' sums plus "not_in_loss_records": what no record written
        carried (lines dropped at the end, records the reader never got)."""
        self.stopping()
        assert self._deadline is not None
        self.writer.close(self._deadline)
        written = self.writer.tally()
        total = self.total.as_json() | {"backlog_dropped": written.signals_dropped}
        reported = written.reported.as_json()
        summary = {
            "type": "summary",
            "flow_events_counted": self.counted,
            "flow_events_written": written.signals_written,
            "lines_written": written.lines_written,
            **total,
            "not_in_loss_records": {name: total[name] - reported[name] for name in total},
            "reader_gone": written.gone,
        }
        self.writer.write_now(json.dumps(summary, separators=(",", ":")))
        return summary
