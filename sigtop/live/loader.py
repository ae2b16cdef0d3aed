"""Compile, load and attach bpf/sigtop.bpf.c with BCC; detach it again.

BCC compiles the C at every start (about a second here); the compiler's
memory is given back once the programs are loaded.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sigtop.live import btf, preflight
from sigtop.live.config import TraceConfig
from sigtop.live.preflight import CollectorError

PROGRAM = "sigtop.bpf.c"
ABI_HEADER = "sigtop.h"
MADV_PAGEOUT = 21  # Linux 5.4+: reclaim these pages (clean file pages are simply dropped)
COMPILER_LIBRARIES = ("libLLVM", "libclang")


INCLUDE = re.compile(r'^#include "(\w+\.bpf\.h)"[^\n]*$', re.M)


def bpf_source_text() -> str:
    """The program as BCC compiles it: sigtop.bpf.c with each of its *.bpf.h in place of its #include.

    BCC rewrites its dialect (map.lookup(), TRACEPOINT_PROBE) only in the text
    it is handed, never in an included file, so the concerns split into
    files are put back together here; #line marks keep the compiler's errors
    pointing into the file that holds the line.
    """
    package = resources.files("sigtop.bpf")
    main = package.joinpath(PROGRAM).read_text()
    pieces = []
    at = 0
    for match in INCLUDE.finditer(main):
        pieces.append(main[at : match.start()])
        line = main.count("\n", 0, match.start()) + 1
        part = package.joinpath(match.group(1)).read_text()
        pieces.append(f'#line 1 "{match.group(1)}"\n{part}\n#line {line + 1} "{PROGRAM}"')
        at = match.end()
    pieces.append(main[at:])
    return "".join(pieces)


def abi_header_text() -> str:
    return resources.files("sigtop.bpf").joinpath(ABI_HEADER).read_text()


@contextmanager
def _include_dir() -> Iterator[Path]:
    """A real directory holding sigtop.h, for the compiler's -I (package data may be zipped)."""
    with resources.as_file(resources.files("sigtop.bpf").joinpath(ABI_HEADER)) as header:
        yield Path(header).parent


class _StderrCapture:
    """Capture fd 2 around BCC's compile, which prints clang's output straight to it."""

    def __enter__(self) -> _StderrCapture:
        self.file = tempfile.TemporaryFile(mode="w+b")
        self.saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        return self

    def __exit__(self, *exc: object) -> None:
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.file.seek(0)
        self.text = self.file.read().decode(errors="replace")
        self.file.close()


@dataclass
class LoadedProgram:
    bpf: Any  # bcc.BPF, every probe attached
    task_storage: bool  # in-flight syscalls in task storage (else the LRU hash)
    raw_generate: bool  # signal_generate as a raw tracepoint (else the classic one)


# The raw tracepoint's arguments as the program reads them (bpf/sigtop.bpf.c).
GENERATE_ARGS = ["int", "struct kernel_siginfo *", "struct task_struct *", "int", "int"]


def task_offsets(vmlinux: str = str(btf.VMLINUX)) -> dict[str, int]:
    """Where the raw signal_generate program reads the target task, from this kernel's BTF.

    Raises BtfError when the kernel's BTF lacks them or the tracepoint has
    another prototype: the caller then uses the classic tracepoint.
    """
    types = btf.load_vmlinux(Path(vmlinux))
    args = types.raw_tracepoint_args("signal_generate")
    if args != GENERATE_ARGS:
        raise btf.BtfError(f"signal_generate's raw arguments are {args}")
    pid = types.member_offset("task_struct", "pid")
    if types.member_offset("task_struct", "tgid") != pid + 4:
        raise btf.BtfError("task_struct.tgid does not follow pid")  # the program reads both at once
    pending_set = types.member_offset("sigpending", "signal")  # the bitmask of what is on a list
    return {
        "TASK_PID_OFFSET": pid,
        "TASK_COMM_OFFSET": types.member_offset("task_struct", "comm"),
        "TASK_THREAD_PID_OFFSET": types.member_offset("task_struct", "thread_pid"),
        "PID_LEVEL_OFFSET": types.member_offset("pid", "level"),
        "TASK_START_TIME_OFFSET": types.member_offset("task_struct", "start_time"),
        # The fates of queued signals: what is still pending, and the exit code, at exit.
        "TASK_PENDING_SIGNAL_OFFSET": types.member_offset("task_struct", "pending") + pending_set,
        "TASK_SIGNAL_OFFSET": types.member_offset("task_struct", "signal"),
        "SIGNAL_SHARED_PENDING_OFFSET": types.member_offset("signal_struct", "shared_pending") + pending_set,
        "TASK_EXIT_CODE_OFFSET": types.member_offset("task_struct", "exit_code"),
        "TASK_FLAGS_OFFSET": types.member_offset("task_struct", "flags"),  # PF_EXITING: a parent's death signal
    }


def _choices(config: TraceConfig) -> list[tuple[bool, bool]]:
    """(task storage, raw generate) to try, best first; a choice the config made is never varied."""
    has_btf = preflight.has_btf(config.vmlinux)
    storage = [config.task_storage] if config.task_storage is not None else ([True, False] if has_btf else [False])
    raw = [config.raw_generate] if config.raw_generate is not None else ([True, False] if has_btf else [False])
    return [(s, r) for s in storage for r in raw]


def load(config: TraceConfig, phase: Callable[[str], None] | None = None) -> LoadedProgram:
    """Check the machine, compile, load and attach every probe; CollectorError with one line on failure.
    `phase` is told each step as it starts (the live view shows it until LIVE).

    Task-local storage needs BTF (and a kernel that offers it to tracepoint
    programs, 5.19 and later); else an LRU hash does. A raw signal_generate
    needs the task's layout from BTF; else the classic tracepoint does.
    """
    say = phase or (lambda _step: None)
    preflight.check_all()
    say("loading BCC")
    bcc = preflight.import_bcc()
    offsets: dict[str, int] | None = None
    offsets_failure = ""
    failure = "nothing to try"
    for task_storage, raw in _choices(config):
        if raw and offsets is None:
            try:
                offsets = task_offsets(config.vmlinux)
            except btf.BtfError as exc:
                offsets_failure = str(exc)
                if config.raw_generate:
                    raise CollectorError(f"signal_generate cannot be a raw tracepoint here: {exc}") from None
                continue
        say(f"compiling and attaching ({'BTF' if raw else 'no BTF: classic tracepoints'})")
        bpf, error = _compile_and_attach(bcc, config, task_storage, offsets if raw else None)
        if error is None:
            release_compiler_memory()
            return LoadedProgram(bpf, task_storage, raw)
        failure = error
    raise CollectorError(f"could not load the BPF program: {failure or offsets_failure}")


def _compile_and_attach(
    bcc: Any, config: TraceConfig, task_storage: bool, task_offsets: dict[str, int] | None
) -> tuple[Any, str | None]:
    """The attached program, or None and the first error line."""
    cflags = config.cflags(os.getpid(), task_storage=task_storage, task_offsets=task_offsets)
    # Built in two steps so that a load failing half-way through (some
    # probes already attached) can be detached before the next try.
    bpf = bcc.BPF.__new__(bcc.BPF)
    failure: Exception | None = None
    with _include_dir() as include, _StderrCapture() as captured:
        try:
            bpf.__init__(text=bpf_source_text().encode(), cflags=[*cflags, f"-I{include}"])
        except Exception as exc:  # BCC raises bare Exception on compile/load/attach
            failure = exc
            bpf.cleanup()
    if failure is not None:
        errors = [line for line in captured.text.splitlines() if "error" in line]
        return None, errors[0].strip() if errors else str(failure)
    return bpf, None


_holders: list[subprocess.Popen[bytes]] = []  # children releasing probes, reaped as they end


def _release_holder(bpf: Any) -> subprocess.Popen[bytes] | None:
    """A child holding the last reference to every probe's perf event until its stdin closes."""
    fds = list(bpf.tracepoint_fds.values())
    if not fds:
        return None
    try:
        return subprocess.Popen(
            ["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=fds, start_new_session=True
        )
    except OSError:
        return None  # no child: this process waits for the release itself


def hand_off(bpf: Any) -> None:
    """The process is about to end without detaching (a watchdog's os._exit): let the kernel's
    slow release of the probes happen in a child, not in this process's exit."""
    holder = _release_holder(bpf)
    if holder is not None:
        _holders.append(holder)  # its stdin closes when this process is gone


def detach(bpf: Any) -> None:
    """Stop every probe at once and free the maps; the kernel finishes the release in a child.

    Freeing a tracepoint's perf event waits out RCU grace periods under the
    kernel's event_mutex (~40 ms each, one after another: 27 probes take over
    a second, in parallel or not). Each probe is disabled here, so none runs
    after this returns, but the last reference to its event is held by a
    short-lived child (`cat`, until its stdin closes) whose exit does the
    waiting: sigtop ends on time (a signal ends the stream within a second)
    and nothing stays attached once that child is gone, about a second later,
    whether sigtop exits or dies."""
    holder = _release_holder(bpf)
    try:
        bpf.cleanup()  # disables and closes each probe (the child holds the slow part), the maps, the programs
    finally:
        if holder is not None:
            holder.stdin.close()  # its exit releases the probes; it is reaped by whoever outlives it
            _holders.append(holder)
            _holders[:] = [h for h in _holders if h.poll() is None]


def release_compiler_memory() -> None:
    """Give back what BCC's compiler used, once the programs are loaded.

    The compile is sigtop's peak: glibc keeps the heap it freed, and the
    pages of LLVM's and clang's code it ran (~80 MB) stay resident though
    nothing runs them again. malloc_trim returns the heap; MADV_PAGEOUT
    drops those read-only code pages (re-read from the page cache if ever
    touched again). Writable mappings are left alone.
    """
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.malloc_trim(0)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) < 6 or "w" in fields[1] or not any(lib in fields[5] for lib in COMPILER_LIBRARIES):
                    continue
                start, end = (int(x, 16) for x in fields[0].split("-"))
                libc.madvise(start, end - start, MADV_PAGEOUT)  # EINVAL on old kernels: nothing lost
    except (OSError, AttributeError):
        pass


def bcc_event_class(bpf: Any, table_name: bytes) -> type:
    """BCC's ctypes view of the struct a ring buffer carries (built from the C by BCC itself)."""
    return preflight.import_bcc().table._get_event_class(bpf[table_name])
