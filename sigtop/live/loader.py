"""Load and attach bpf/sigtop.bpf.c, compiled once per kernel and configuration; detach it again.

BCC compiles the C (about a second here) in a child (sigtop.live.build) the
first time a kernel and configuration are traced; the compiled program is
kept (sigtop.live.cache) and every later start only loads it (tens of ms).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sigtop.live import btf, build, cache, objects, preflight
from sigtop.live.config import TraceConfig
from sigtop.live.preflight import CollectorError

PROGRAM = "sigtop.bpf.c"


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


@dataclass
class LoadedProgram:
    bpf: objects.LoadedObjects  # every probe attached
    task_storage: bool  # in-flight syscalls in task storage (else the LRU hash)
    raw_generate: bool  # signal_generate as a raw tracepoint (else the classic one)
    compiled: bool  # compiled for this start (else a program kept from an earlier one)


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
        # Whether the target is traced, and by whom (a tracer that did not pass a signal on).
        "TASK_PTRACE_OFFSET": types.member_offset("task_struct", "ptrace"),
        "TASK_PARENT_OFFSET": types.member_offset("task_struct", "parent"),
    }


def register_offsets(vmlinux: str = str(btf.VMLINUX)) -> dict[str, int]:
    """Where --light reads a send's syscall number and arguments in the sender's saved
    registers (x86_64's struct pt_regs), from this kernel's BTF."""
    types = btf.load_vmlinux(Path(vmlinux))
    return {
        f"REGS_{reg.upper()}_OFFSET": types.member_offset("pt_regs", reg)
        for reg in ("orig_ax", "cs", "di", "si", "dx", "r10")
    }


def kernel_offsets(config: TraceConfig) -> dict[str, int]:
    """task_offsets (and, for --light, register_offsets) of this kernel, read from its BTF once:
    parsing BTF is ~0.2 s, most of a warm start, so they are kept beside the compiled programs
    (sigtop.live.cache: root's alone), named by the kernel, the BTF file and the code that reads it."""
    code = "".join(Path(module.__file__).read_text() for module in (btf, sys.modules[__name__]))
    try:
        st = os.stat(config.vmlinux)
        where = f"{config.vmlinux} {st.st_size}"
    except OSError:
        where = config.vmlinux
    name = "offsets-" + cache.key(code, [where, f"light={config.light}"])
    kept = (cache.get(name) or {}).get("offsets") if config.reuse_compiled else None
    if isinstance(kept, dict) and kept and all(type(v) is int and 0 <= v < 1 << 16 for v in kept.values()):
        return kept
    offsets = task_offsets(config.vmlinux)
    if config.light:
        offsets |= register_offsets(config.vmlinux)
    cache.put(name, {"format": objects.FORMAT, "offsets": offsets})
    return offsets


def _choices(config: TraceConfig) -> list[tuple[bool, bool]]:
    """(task storage, raw generate) to try, best first; a choice the config made is never varied."""
    has_btf = preflight.has_btf(config.vmlinux)
    storage = [config.task_storage] if config.task_storage is not None else ([True, False] if has_btf else [False])
    raw = [config.raw_generate] if config.raw_generate is not None else ([True, False] if has_btf else [False])
    if config.light:
        raw = [True]  # the registers are read through BTF: the classic tracepoint cannot be light
    return [(s, r) for s in storage for r in raw]


def load(config: TraceConfig, phase: Callable[[str], None] | None = None) -> LoadedProgram:
    """Check the machine, load (compiling first where no earlier start left the program) and
    attach every probe; CollectorError with one line on failure. `phase` is told each step as
    it starts (the live view shows it until LIVE).

    Task-local storage needs BTF (and a kernel that offers it to tracepoint
    programs, 5.19 and later); else an LRU hash does. A raw signal_generate
    needs the task's layout from BTF; else the classic tracepoint does.
    """
    say = phase or (lambda _step: None)
    preflight.check_all()
    if config.light:
        preflight.check_light(config.vmlinux)
    source = bpf_source_text()
    self_tgid = os.getpid() if config.exclude_self else 0
    offsets: dict[str, int] | None = None
    offsets_failure = ""
    failure = "nothing to try"
    for task_storage, raw in _choices(config):
        if raw and offsets is None:
            try:
                offsets = kernel_offsets(config)
            except btf.BtfError as exc:
                offsets_failure = str(exc)
                if config.raw_generate or config.light:
                    raise CollectorError(f"signal_generate cannot be a raw tracepoint here: {exc}") from None
                continue
        cflags = config.cflags(task_storage=task_storage, task_offsets=offsets if raw else None)
        name = cache.key(source, cflags)
        kept = cache.get(name) if config.reuse_compiled else None
        for candidate in (kept, None) if kept is not None else (None,):
            what = "BTF" if raw else "no BTF: classic tracepoints"
            program = candidate
            if program is None:
                say(f"compiling ({what}; the first start on this kernel and configuration)")
                preflight.check_compiling()  # headers, BCC, memory: a failure here is final
                try:
                    program = build.compile_in_child(source, cflags)
                except CollectorError as exc:
                    failure = str(exc)
                    break
            say(f"loading and attaching ({what})")
            try:
                loaded = objects.load(program, source, self_tgid)
            except objects.LoadError as exc:
                failure = str(exc)
                if program is kept:
                    cache.drop(name)  # kept by an earlier start, refused now: compile it afresh
                continue
            if program is not kept:
                cache.put(name, program)
            return LoadedProgram(loaded, task_storage, raw, compiled=program is not kept)
    raise CollectorError(f"could not load the BPF program: {failure or offsets_failure}")


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
    waiting: sigtop ends on time (a signal ends the stream within its promise)
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
