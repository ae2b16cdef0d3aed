"""What to trace and with what sizes: the trace configuration, turned into the BPF program's -D flags."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sigtop.names import signame

# The OOM killer's tracepoint: attached where the kernel has it (not every build does).
OOM_TRACEPOINT = "/sys/kernel/tracing/events/oom/mark_victim"


@dataclass(frozen=True)
class TraceConfig:
    pids: tuple[int, ...] = ()  # only signals from or to these processes
    follow: bool = False  # and the processes they start after attach (and theirs), as they start
    signals: tuple[int, ...] = ()  # only these signals
    details: bool = True  # detail events for drill-down (the counts never need them)
    exclude_self: bool = True
    interval_s: float = 1.0
    ringbuf_pages: int = 2048  # 8 MiB, with details (one event per signal)
    rare_ringbuf_pages: int = 64  # without: only rare events (deaths, the OOM killer, dispositions)
    task_storage: bool | None = None  # in-flight syscalls in task storage; None: where BTF exists
    raw_generate: bool | None = None  # signal_generate as a raw tracepoint; None: where BTF allows
    follow_fates: bool = True  # follow each queued signal to its end (needs the raw signal_generate)
    # No syscall tracepoint (--light): no syscall on the machine pays for sigtop; sends are read
    # from the sender's registers at signal_generate, and what only a syscall shows is unseen.
    light: bool = False
    reuse_compiled: bool = True  # load the program an earlier start compiled, where one did (sigtop.live.cache)
    # Where the kernel's BTF is read from. The tests point it at nothing to run the no-BTF
    # fallback for real on a kernel that has BTF (the detection, not a forced choice).
    vmlinux: str = "/sys/kernel/btf/vmlinux"
    # Map sizes (bpf/sigtop.h requires each): user space evicts against the same numbers.
    flow_entries: int = 16384
    thread_entries: int = 16384
    signalfd_entries: int = 4096
    pid_filter_entries: int = 16384  # the pids asked for, their threads, and what --follow adds
    inflight_entries: int = 10240  # the LRU fallback of in-flight syscalls, by tid
    pending_entries: int = 16384  # queued signals followed to their end (and realtime queues)
    exit_entries: int = 4096  # exits with signals pending, until user space reads them
    group_kill_entries: int = 4096  # processes whose threads took the kernel's SIGKILL, until their end (LRU)

    def describe(self) -> str:
        """What the kernel side traces, as the header shows it ("" for everything)."""
        parts = [f"pid:{','.join(map(str, self.pids))}{'+children' if self.follow else ''}"] if self.pids else []
        if self.signals:
            parts.append("sig:" + ",".join(signame(s).removeprefix("SIG") for s in self.signals))
        return " ".join(parts)

    def ring_pages(self) -> int:
        return self.ringbuf_pages if self.details else self.rare_ringbuf_pages

    def map_sizes(self) -> dict[str, int]:
        """The -D names bpf/sigtop.h requires, with their values."""
        return {
            "FLOW_ENTRIES": self.flow_entries,
            "THREAD_ENTRIES": self.thread_entries,
            "SIGNALFD_ENTRIES": self.signalfd_entries,
            "PID_FILTER_ENTRIES": self.pid_filter_entries,
            "INFLIGHT_ENTRIES": self.inflight_entries,
            "PENDING_ENTRIES": self.pending_entries,
            "EXIT_ENTRIES": self.exit_entries,
            "GROUP_KILL_ENTRIES": self.group_kill_entries,
            "RINGBUF_PAGES": self.ring_pages(),
        }

    def cflags(self, task_storage: bool = False, task_offsets: dict[str, int] | None = None) -> list[str]:
        """The program's -D flags; task_offsets (from the kernel's BTF) make signal_generate a raw tracepoint.

        Nothing that differs from one run to the next is here (sigtop's own pid is set in a map
        at attach): the same configuration on the same kernel compiles to the same program, once."""
        flags = [
            f"-DTASK_STORAGE={int(task_storage)}",
            f"-DRAW_GENERATE={int(task_offsets is not None)}",
            f"-DFOLLOW_FATES={int(self.follow_fates)}",
            f"-DHAS_OOM_TRACEPOINT={int(os.path.exists(OOM_TRACEPOINT))}",
            *host_pid_namespace(),
            *(f"-D{name}={value}" for name, value in (task_offsets or {}).items()),
            f"-DDETAILS={int(self.details)}",
            f"-DLIGHT={int(self.light)}",
            *(f"-D{name}={value}" for name, value in self.map_sizes().items()),
            "-w",  # the headers of a nearby kernel warn; our code is checked by the verifier
        ]
        if self.pids:
            flags.append("-DFILTER_PIDS=1")
        if self.signals:
            mask = 0
            for sig in self.signals:
                if sig > 0:
                    mask |= 1 << (sig - 1)
            flags.append(f"-DSIG_MASK={mask:#x}ULL")
        return flags


def host_pid_namespace() -> list[str]:
    """sigtop's own pid namespace as -D flags (the kernel's pids are its pids): where the kernel
    has no BTF, the program tells a sender in a child pid namespace by it."""
    try:
        st = os.stat("/proc/self/ns/pid")
    except OSError:
        return []
    return [f"-DHOST_PIDNS_DEV={st.st_dev}ULL", f"-DHOST_PIDNS_INO={st.st_ino}ULL"]
