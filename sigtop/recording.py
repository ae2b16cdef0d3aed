"""The recording format: what a source produced, one JSON document per line.

Line 1 is a header; each further line is one `Batch` (sigtop.codec). The
writer is the `record` command's sink; sigtop.sources.replay plays a
recording back as a source, to the same app and sinks, with no root and no BPF.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import platform
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sigtop.codec import RecordValueError, batch_from_json, batch_json, event_json
from sigtop.contract import SourceError
from sigtop.wire import Batch

FORMAT = "sigtop-recording"
VERSION = 1


class RecordingError(SourceError, ValueError):
    """A recording that cannot be read, with the line at fault."""


def header(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "started": time.time(),
        "host": platform.node(),
        "kernel": os.uname().release,
        "config": config,
    }


SEPARATORS = (",", ":")
EVENT_CHUNK = 2_000


class RecordingFullError(RecordingError):
    """The output could take no more (a full disk): what was written up to the last whole batch stays valid."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # the system's word for it: "No space left on device", ...


def open_output(path: str, force: bool = False) -> int:
    """A file descriptor to record into, opened without following a symlink.

    Never clobbers an existing file unless `force` (and even then only a
    regular file, never through a symlink): root's sigtop must not be made
    to overwrite a file by a link planted in /tmp. Mode 0600: a recording
    shows every process's command line.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise RecordingError(f"{path} exists: not overwriting it (--force to replace a regular file)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RecordingError(f"{path} is a symbolic link: not writing through it") from None
        raise RecordingError(f"cannot write {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RecordingError(f"{path} is not a regular file: not recording into it")
    os.fchmod(fd, 0o600)  # a replaced file keeps its mode otherwise (it may have been world-readable)
    return fd


class RecordingWriter:
    """Writes a header, then one batch per line, each line whole or not at all.

    Each line goes out in one write; after a failed one (a full disk) the
    file is cut back to the end of the last whole line, so it always
    replays. To a pipe (`-o -`) a failed write just ends the recording.
    """

    def __init__(self, fd: int, config: dict[str, Any], name: str = "") -> None:
        self.fd = fd
        self.name = name
        self.batches = 0
        self._good = 0  # bytes written in whole lines
        self._seekable = stat.S_ISREG(os.fstat(fd).st_mode)
        self.counts_only = 0  # batches written without their events: the disk had no room for them
        self.events_not_written = 0
        self.full_reason = ""
        self._write(header(config))

    def _write(self, doc: dict[str, Any]) -> None:
        self._write_line([json.dumps(doc, separators=SEPARATORS) + "\n"])

    def _write_line(self, pieces: Iterable[str]) -> None:
        """One line, written piece by piece; on failure the file is cut back to the last whole line."""
        written = 0
        try:
            for piece in pieces:
                data = memoryview(piece.encode())
                done = 0
                while done < len(data):
                    done += os.write(self.fd, data[done:])
                written += done
        except OSError as exc:
            if self._seekable:
                os.ftruncate(self.fd, self._good)
                os.lseek(self.fd, self._good, os.SEEK_SET)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                message = f"{self.name}: {exc.strerror} after {self.batches} batches; the file holds them, whole"
                raise RecordingFullError(message, exc.strerror) from None
            raise
        self._good += written

    def write(self, batch: Batch) -> None:
        """A batch as one line, its events streamed in chunks: a storm's 120,000 events a
        second never become one 100 MB document in memory."""
        events = batch.events
        doc = batch_json(batch, with_events=False)
        del doc["events"]
        head = json.dumps(doc, separators=SEPARATORS)

        def pieces() -> Iterator[str]:
            yield head[:-1] + ',"events":['
            for start in range(0, len(events), EVENT_CHUNK):
                chunk = events[start : start + EVENT_CHUNK]
                yield ("," if start else "") + ",".join(json.dumps(event_json(e), separators=SEPARATORS) for e in chunk)
            yield "]}\n"

        try:
            self._write_line(pieces())
        except RecordingFullError as full:
            if not len(events):
                raise self._full(full.reason) from None
            # The counts are the point of a recording and need little room: keep them without
            # the events (said as dropped in the batch itself) while that still fits; the next
            # batch tries its events again (the disk may have room by then).
            stats = dataclasses.replace(batch.stats, events_dropped=batch.stats.events_dropped + len(events))
            counts_only = dataclasses.replace(batch, events=[], stats=stats)
            line = json.dumps(batch_json(counts_only), separators=SEPARATORS)
            try:
                self._write_line([line + "\n"])
            except RecordingFullError:
                raise self._full(full.reason) from None
            self.counts_only += 1
            self.events_not_written += len(events)
            self.full_reason = full.reason
        self.batches += 1

    def _full(self, reason: str) -> RecordingFullError:
        """Not even a batch's counts fit: the recording ends here, whole."""
        also = f", {self.counts_only} of them with their counts only" if self.counts_only else ""
        return RecordingFullError(
            f"{self.name}: {reason} after {self.batches} batches{also}; the file holds them, whole", reason
        )

    def shortfall(self) -> str | None:
        """What a full disk cost a recording that went on (one line), or None."""
        if not self.counts_only:
            return None
        return (
            f"{self.name}: {self.full_reason}: {self.counts_only} of {self.batches} batches kept their counts without "
            f"their {self.events_not_written:,} events (each batch says so in events_dropped)"
        )


def read_recording(path: str | Path, notes: list[str] | None = None) -> tuple[dict[str, Any], list[Batch]]:
    """Parse a whole recording, or raise RecordingError naming the bad line.

    A last line cut off (a crash mid-write) is left out, and said in
    `notes`: everything before it is whole and replays.
    """
    with RecordingReader(path) as reader:
        batches = list(reader.batches(notes))
        return reader.head, batches


class RecordingReader:
    """A recording read as it is played: its header at once (a file that is no recording fails
    here), then one batch at a time, so the first screen of any recording comes within a second
    and memory is the view's, never the file's. RecordingError names the line at fault."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        try:
            self._file = Path(path).open(encoding="utf-8")  # noqa: SIM115 - closed by close() or the with
        except OSError as exc:
            raise RecordingError(f"cannot read recording {path}: {exc.strerror or exc}") from None
        try:
            first = self._readline()
            if not first:
                raise RecordingError(f"{path}: empty file, not a sigtop recording")
            self.head = _header(path, first)
        except BaseException:
            self._file.close()
            raise
        self.number = 1  # the line read last
        self.count = 0  # batches given so far

    def _readline(self) -> str:
        try:
            return self._file.readline()
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise RecordingError(f"cannot read recording {self.path}: {why}") from None

    def batches(
        self, notes: list[str] | None = None, limit: int | None = None, max_chars: int | None = None
    ) -> Iterator[Batch]:
        """The next batches (at most `limit`, and no more once `max_chars` of lines are read), in
        order, until the end of the file."""
        given = chars = 0
        while (limit is None or given < limit) and (max_chars is None or chars < max_chars):
            line = self._readline()
            if not line:
                return
            self.number += 1
            if not line.strip():
                continue
            if not line.endswith("\n"):
                if notes is not None:
                    notes.append(
                        f"{self.path}:{self.number}: the last line was cut off; replaying {self.count} batches"
                    )
                return
            batch = _batch(self.path, self.number, line)
            given += 1
            chars += len(line)
            self.count += 1
            yield batch

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordingReader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _header(path: str | Path, line: str) -> dict[str, Any]:
    try:
        head = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        raise RecordingError(f"{path}:1: not a sigtop recording (no header)") from None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise RecordingError(f"{path}:1: not a sigtop recording (no header)")
    if head.get("version") != VERSION:
        raise RecordingError(f"{path}:1: recording version {head.get('version')!r:.20} is not supported")
    return head


def _batch(path: str | Path, number: int, line: str) -> Batch:
    try:
        return batch_from_json(json.loads(line))
    except json.JSONDecodeError as exc:
        raise RecordingError(f"{path}:{number}: corrupt line ({exc.msg} at column {exc.colno})") from None
    except RecordValueError as exc:
        raise RecordingError(f"{path}:{number}: {exc}") from None
    except (RecursionError, ValueError) as exc:  # nesting too deep, numbers too long for int()
        raise RecordingError(f"{path}:{number}: corrupt line ({type(exc).__name__})") from None
