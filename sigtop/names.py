"""Names for the numbers the kernel reports: signals, si_codes, errnos, flags.

Pure lookups, built on the standard library's own tables where it has them
(`signal.Signals`, `errno.errorcode`).
"""

from __future__ import annotations

import errno
import functools
import pwd
import signal
from enum import IntEnum

from sigtop.abi import kernel_abi

# The kernel ABI's enums and constants (bpf/sigtop.h is their one definition; sigtop.abi reads it).
_ABI = kernel_abi()

SIGRTMIN = signal.SIGRTMIN  # 34 with glibc: the kernel's 32 and 33 are NPTL's
SIGRTMAX = signal.SIGRTMAX
KERNEL_SIGRTMIN = _ABI.constants["SIGRTMIN"]
SI_TIMER = _ABI.constants["SI_TIMER"]  # a POSIX timer's signal
# SIGCHLD's si_codes: how the child changed state.
CLD_EXITED, CLD_KILLED, CLD_DUMPED, CLD_CONTINUED = (
    _ABI.constants[n] for n in ("CLD_EXITED", "CLD_KILLED", "CLD_DUMPED", "CLD_CONTINUED")
)
EXIT_SIGNAL_MASK = _ABI.constants["EXIT_SIGNAL_MASK"]  # the killing signal in an exit code

# The kernel's realtime range starts at 32; glibc reserves 32 and 33.
_STANDARD = {s.value: s.name for s in signal.Signals if s.name not in ("SIGRTMIN", "SIGRTMAX")}

# How a signal was sent: a syscall, raised by the kernel, or two of ours: `overflow`
# (signals the kernel's flow map had no room for, counted by signal and result) and
# `pdeathsig` (a parent's death signal, PR_SET_PDEATHSIG; the sender is that parent), and
# `cgroup.kill` (the SIGKILLs a write to a cgroup's cgroup.kill raises; the sender is the writer).
Syscall = IntEnum("Syscall", _ABI.members("syscall_id", "SC_"))
# The outcome of one send: the kernel's TRACE_SIGNAL_* (delivered means queued), and
# no_signal (a sig-0 probe) and failed (see its errno).
Result = IntEnum("Result", _ABI.members("result_id", "RES_"))


def result_word(result: int) -> str:
    """A result as sigtop's outputs name it: the TUI's QUEUED for the kernel's DELIVERED (put on
    a pending list, not yet taken); the kernel's names for the rest. The JSON's `results` keep
    the kernel's names (its fields are never renamed)."""
    if result == Result.delivered:
        return "queued"
    return Result(result).name if result in Result._value2member_map_ else str(result)


# Which payload a detail event carries.
EventKind = IntEnum("EventKind", _ABI.members("event_kind", "EV_"))
# The per-CPU stats array's slots, in order (the last, STAT_MAX, is their number).
STAT_NAMES = tuple(name for name in _ABI.members("stat_id", "STAT_") if name != "max")

NOT_SYSCALLS = (Syscall.kernel, Syscall.overflow, Syscall.pdeathsig, Syscall.cgroup_kill)
SEND_SYSCALLS = tuple(s for s in Syscall if s not in NOT_SYSCALLS)

# What --light (no syscall tracepoint) cannot see: each is known only from a syscall's own
# tracepoint. Every successful send is still seen, named and counted at signal_generate.
LIGHT_UNSEEN = (
    "failed sends (EPERM, ESRCH, EINVAL)",
    "sig-0 probes",
    "signalfd creation and masks",
    "rt_sigaction calls (dispositions are still read from /proc)",
    "rt_sigreturn",
    "sigwait reads as they happen (counted read at the next collection)",
)
LIGHT_UNSEEN_SHORT = "failed sends, probes, signalfd, sigaction, sigreturn"
VIA_NAMES = {Syscall.cgroup_kill: "cgroup.kill"}  # where the enum's name is not the word shown
CODE_OTHER = _ABI.constants["CODE_OTHER"]  # a caller-chosen si_code the kernel does not define
SIG_INVALID = _ABI.constants["SIG_INVALID"]  # the key of sends that asked for no signal at all


def known_code(code: int) -> int:
    """The si_code as the kernel's flow key keeps it (bpf known_code): made-up codes fold into CODE_OTHER.

    Used only to read recordings made before events carried their flow key."""
    return code if -7 <= code <= 0x80 or code == -60 else CODE_OTHER


def syscall_name(number: int) -> str:
    """kill, tgkill, ... or `syscall#9` for an id a newer sigtop wrote."""
    if number not in Syscall._value2member_map_:
        return f"syscall#{number}"
    return VIA_NAMES.get(Syscall(number), Syscall(number).name)


GENERATED_RESULTS = (
    Result.delivered,
    Result.ignored,
    Result.already_pending,
    Result.overflow_fail,
    Result.lose_info,
)


def signame(sig: int) -> str:
    """SIGTERM, SIGRTMIN+3, or the number for what has no name."""
    if sig == 0:
        return "0"
    if sig == SIG_INVALID:
        return "(invalid)"  # a send that asked for no signal (EINVAL), any number
    if sig in _STANDARD and sig < KERNEL_SIGRTMIN:
        return _STANDARD[sig]
    if sig == SIGRTMIN:
        return "SIGRTMIN"
    if sig == SIGRTMAX:
        return "SIGRTMAX"
    if SIGRTMIN < sig < SIGRTMAX:
        return f"SIGRTMIN+{sig - SIGRTMIN}"
    if KERNEL_SIGRTMIN <= sig < SIGRTMIN:
        return f"SIG{sig}"  # reserved by glibc for threads
    return str(sig)


class UnknownSignalError(ValueError):
    pass


def parse_signal(text: str) -> int:
    """Accept 15, TERM, SIGTERM, sigterm, RTMIN+2, SIGRTMAX-1, 0."""
    word = text.strip().upper()
    if word.lstrip("-").isdigit():
        number = int(word)
        if 0 <= number <= 64:
            return number
        raise UnknownSignalError(f"signal number out of range 0..64: {text!r}")
    if not word.startswith("SIG"):
        word = "SIG" + word
    for base, value in (("SIGRTMIN", SIGRTMIN), ("SIGRTMAX", SIGRTMAX)):
        if word.startswith(base):
            rest = word[len(base) :]
            try:
                offset = int(rest) if rest else 0
            except ValueError:
                break
            number = value + offset
            if SIGRTMIN <= number <= SIGRTMAX:
                return number
            break
    try:
        return signal.Signals[word].value
    except KeyError:
        raise UnknownSignalError(f"unknown signal name: {text!r}") from None


def signal_mask_names(mask: int) -> list[str]:
    """Names of the signals in a sigset (bit n-1 is signal n)."""
    return [signame(n) for n in range(1, 65) if mask >> (n - 1) & 1]


def errno_name(err: int) -> str:
    if err == 0:
        return "?"  # failed sends counted in the overflow row: their errno did not fit either
    return errno.errorcode.get(err, f"E{err}")


_SI_CODES = {
    0: "SI_USER",
    0x80: "SI_KERNEL",
    -1: "SI_QUEUE",
    -2: "SI_TIMER",
    -3: "SI_MESGQ",
    -4: "SI_ASYNCIO",
    -5: "SI_SIGIO",
    -6: "SI_TKILL",
    -7: "SI_DETHREAD",
    -60: "SI_ASYNCNL",
}

_SIGNAL_CODES = {
    signal.SIGILL: (
        "ILL",
        ["ILLOPC", "ILLOPN", "ILLADR", "ILLTRP", "PRVOPC", "PRVREG", "COPROC", "BADSTK", "BADIADDR"],
    ),
    signal.SIGFPE: (
        "FPE",
        ["INTDIV", "INTOVF", "FLTDIV", "FLTOVF", "FLTUND", "FLTRES", "FLTINV", "FLTSUB", "FLTUNK", "CONDTRAP"],
    ),
    signal.SIGSEGV: (
        "SEGV",
        ["MAPERR", "ACCERR", "BNDERR", "PKUERR", "ACCADI", "ADIDERR", "ADIPERR", "MTEAERR", "MTESERR", "CPERR"],
    ),
    signal.SIGBUS: ("BUS", ["ADRALN", "ADRERR", "OBJERR", "MCEERR_AR", "MCEERR_AO"]),
    signal.SIGTRAP: ("TRAP", ["BRKPT", "TRACE", "BRANCH", "HWBKPT", "UNK", "PERF"]),
    signal.SIGCHLD: ("CLD", ["EXITED", "KILLED", "DUMPED", "TRAPPED", "STOPPED", "CONTINUED"]),
    signal.SIGPOLL: ("POLL", ["IN", "OUT", "MSG", "ERR", "PRI", "HUP"]),
    signal.SIGSYS: ("SYS", ["SECCOMP", "USER_DISPATCH"]),
}

FAULT_SIGNALS = frozenset({signal.SIGILL, signal.SIGFPE, signal.SIGSEGV, signal.SIGBUS, signal.SIGTRAP, signal.SIGSYS})


def si_code_name(sig: int, code: int) -> str:
    """SI_USER, SEGV_MAPERR, CLD_EXITED, ... or the number."""
    if code == CODE_OTHER:
        return "other"
    if code <= 0 or code == 0x80:
        return _SI_CODES.get(code, str(code))
    prefix, names = _SIGNAL_CODES.get(sig, (None, []))
    if prefix and code <= len(names):
        return f"{prefix}_{names[code - 1]}"
    return str(code)


def kernel_origin(sig: int, code: int) -> str:
    """Class of a kernel-raised signal: fault, child, timer, io, pipe, rlimit or kernel."""
    if code > 0 and code != 0x80:
        if sig in FAULT_SIGNALS:
            return "fault"
        if sig == signal.SIGCHLD:
            return "child"
        if sig == signal.SIGPOLL:
            return "io"
    if code == SI_TIMER:
        return "timer"
    if code in (-4, -5, -3):
        return "io"
    if sig in (signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF):
        return "timer"
    if sig == signal.SIGPIPE:
        return "pipe"
    if sig in (signal.SIGXFSZ, signal.SIGXCPU):  # RLIMIT_FSIZE's send_sig (SI_USER), RLIMIT_CPU's
        return "rlimit"
    return "kernel"


SFD_CLOEXEC = 0o2000000
SFD_NONBLOCK = 0o4000


def sfd_flag_names(flags: int) -> list[str]:
    names = []
    if flags & SFD_CLOEXEC:
        names.append("SFD_CLOEXEC")
    if flags & SFD_NONBLOCK:
        names.append("SFD_NONBLOCK")
    rest = flags & ~(SFD_CLOEXEC | SFD_NONBLOCK)
    if rest:
        names.append(hex(rest))
    return names


PIDFD_FLAGS = {1: "PIDFD_SIGNAL_THREAD", 2: "PIDFD_SIGNAL_THREAD_GROUP", 4: "PIDFD_SIGNAL_PROCESS_GROUP"}


def pidfd_flag_names(flags: int) -> list[str]:
    return [name for bit, name in PIDFD_FLAGS.items() if flags & bit] + ([hex(flags & ~7)] if flags & ~7 else [])


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), *range(0x7F, 0xA0)]}
_CONTROL.update({ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"})
# Bidirectional overrides and isolates reorder what follows them on screen
# (a name that reads as another): shown escaped too.
_CONTROL.update({c: f"\\u{c:04x}" for c in [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]})


def printable(text: str) -> str:
    """A string someone else chose, with control and bidi characters shown escaped (\\x1b, \\u202e).

    The one sanitiser: the model passes every string from a process, the
    file system or a recording through it (SignalModel.apply), so no escape
    sequence reaches a terminal, live or replayed, in the UI, the batch
    table or the JSON. Markup is a separate matter: those strings are only
    ever rendered as rich Text, never parsed.
    """
    if text.isprintable() and text.isascii():
        return text  # the common case, without a copy
    return text.translate(_CONTROL)


@functools.lru_cache(maxsize=1024)
def user_name(uid: int) -> str:
    """An owner uid as people read it: its passwd name where this machine has one."""
    if uid == -1:
        return "[kernel]"  # tables.flows.KERNEL_UID: a kernel-raised signal whose target was not known
    if uid == -2:
        return "(other users)"  # tables.flows.OTHER_USERS
    try:
        return printable(pwd.getpwuid(uid).pw_name)
    except (KeyError, OverflowError):
        return str(uid)
