"""The recording codec: wire records to JSON and back, every value checked against an explicit schema.

The boundary for recordings, which anyone may have crafted: every field has
its type and range checked here, so nothing past it can crash on a null
count, a list where a string belongs or a timestamp of 1e300. Keys a newer
sigtop added are ignored; ids it added (a syscall, an event kind) are kept
and shown as numbers. Recordings made before events carried their flow key
get it here, once, from the event's own fields (`_legacy_flow_key`).
"""

from __future__ import annotations

import errno
import signal
from collections.abc import Callable
from dataclasses import MISSING, asdict, fields
from typing import Any

from sigtop.names import CLD_CONTINUED, CLD_EXITED, SIG_INVALID, EventKind, Result, Syscall, known_code
from sigtop.wire import (
    LAT_BUCKETS,
    Batch,
    Disposition,
    FlowDelta,
    FlowKey,
    KernelStats,
    LatencyHistogram,
    PendingFlow,
    ProcInfo,
    SignalEvent,
    SignalfdState,
    ThreadDelta,
)


class RecordValueError(ValueError):
    """A recorded value of the wrong type or out of range, naming where it is."""


MAX_TS = 1e11  # seconds since 1970: the year 5138
MAX_COUNT = 2**63
MAX_TEXT = 1 << 20
INT32 = (-(2**31), 2**32)  # pids, signals, codes: 32-bit in the kernel (signed or not)
INT64 = (-(2**63), 2**64)
U64 = (0, 2**64)
COUNT = (0, MAX_COUNT)

# ---- checks: each takes (value, where) and returns the value or raises ------------------------


def _int(value: Any, where: str, low: int = INT64[0], high: int = INT64[1]) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
        raise RecordValueError(f"{where}: {value!r:.40} is not an integer in [{low}, {high})")
    return value


def _float(value: Any, where: str, low: float = 0.0, high: float = MAX_TS) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:  # NaN fails
        raise RecordValueError(f"{where}: {value!r:.40} is not a number in [{low:g}, {high:g}]")
    return float(value)


def _str(value: Any, where: str) -> str:
    if type(value) is not str or len(value) > MAX_TEXT:
        raise RecordValueError(f"{where}: {value!r:.40} is not a string (of at most {MAX_TEXT} characters)")
    return value


def _bool(value: Any, where: str) -> bool:
    if type(value) not in (bool, int):
        raise RecordValueError(f"{where}: {value!r:.40} is not a boolean")
    return bool(value)


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list | tuple):
        raise RecordValueError(f"{where}: {value!r:.40} is not a list")
    return value


def _parents(value: Any, where: str) -> list[tuple[int, str]]:
    parents = []
    for i, item in enumerate(_list(value, where)):
        pair = _list(item, f"{where}[{i}]")
        if len(pair) != 2:
            raise RecordValueError(f"{where}[{i}]: not a (pid, comm) pair")
        parents.append((_int(pair[0], f"{where}[{i}]", *INT32), _str(pair[1], f"{where}[{i}]")))
    return parents


def _pidfds(value: Any, where: str) -> dict[int, int]:
    if type(value) is not dict:
        raise RecordValueError(f"{where}: not an object")
    out = {}
    for key, v in value.items():
        fd = int(key) if isinstance(key, str) and key.lstrip("-").isdigit() and len(key) < 12 else key  # JSON: strings
        out[_int(fd, f"{where} key", *INT32)] = _int(v, f"{where}[{key}]", *INT32)
    return out


def _misses(value: Any, where: str) -> dict[str, int]:
    if type(value) is not dict:
        raise RecordValueError(f"{where}: not an object")
    return {_str(k, where): _int(v, f"{where}[{k}]", *COUNT) for k, v in value.items()}


def _pairs(value: Any, where: str) -> list[tuple[int, int]]:
    """(tid, mask) pairs, at most 4096 of them."""
    out = []
    for i, item in enumerate(_list(value, where)[:4096]):
        pair = _list(item, f"{where}[{i}]")
        if len(pair) != 2:
            raise RecordValueError(f"{where}[{i}]: not a pair")
        out.append((_int(pair[0], f"{where}[{i}]", *INT32), _int(pair[1], f"{where}[{i}]", *U64)))
    return out


def _claim(value: Any, where: str) -> tuple[int, int] | None:
    """A spoofed flow's claimed (si_pid, si_uid), or None."""
    if value is None:
        return None
    pair = _list(value, where)
    if len(pair) != 2:
        raise RecordValueError(f"{where}: not an (si_pid, si_uid) pair")
    return _int(pair[0], where, *INT32), _int(pair[1], where, 0, 2**32)


def _cgroup_paths(value: Any, where: str) -> dict[int, str]:
    if type(value) is not dict or len(value) > 100_000:
        raise RecordValueError(f"{where}: not an object (of at most 100,000 entries)")
    out = {}
    for key, path in value.items():
        ident = int(key) if isinstance(key, str) and key.isdigit() and len(key) < 21 else key  # JSON: strings
        out[_int(ident, f"{where} key", *U64)] = _str(path, f"{where}[{key}]")
    return out


def _fills(value: Any, where: str) -> dict[str, float]:
    if type(value) is not dict:
        raise RecordValueError(f"{where}: not an object")
    return {_str(k, where): _float(v, f"{where}[{k}]", 0.0, 1.0) for k, v in value.items()}


def _histogram(value: Any, where: str) -> LatencyHistogram | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise RecordValueError(f"{where}: not an object")
    buckets = _list(value.get("buckets", []), f"{where}.buckets")
    if len(buckets) > LAT_BUCKETS:
        raise RecordValueError(f"{where}.buckets: more than {LAT_BUCKETS}")
    counts = [_int(n, f"{where}.buckets[{i}]", *COUNT) for i, n in enumerate(buckets)]
    return LatencyHistogram(
        counts + [0] * (LAT_BUCKETS - len(counts)),
        _int(value.get("max_ns", 0), f"{where}.max_ns", *COUNT),
        _int(value.get("sum_ns", 0), f"{where}.sum_ns", *COUNT),
    )


def _threads(value: Any, where: str) -> list[int]:
    return [_int(x, f"{where}[{i}]", *INT32) for i, x in enumerate(_list(value, where))][:32]


# ---- schemas: per record, each field's check ------------------------------------------------
# A field is ("int", low, high), ("float", low, high), ("str",) or ("other", check): the first
# three have a fast path (an exact type in range), anything else gets its full check, which
# accepts or names what is wrong.

Schema = dict[str, tuple]


def INT(low: int, high: int) -> tuple:
    return ("int", low, high)


def FLOAT(low: float = 0.0, high: float = MAX_TS) -> tuple:
    return ("float", low, high)


TEXT = ("str",)
S32, C, N = INT(*INT32), INT(*COUNT), INT(0, 2)  # a 32-bit id, a count, a flag


def OTHER(check: Callable[[Any, str], Any]) -> tuple:
    return ("other", check)


FLOW_KEY: Schema = {
    "sender_pid": S32, "target_pid": S32, "target_tgid": S32, "sig": S32, "code": S32, "err": S32,
    "syscall": INT(0, 2**16), "result": INT(0, len(Result)), "spoofed": N, "ns_local": N,
}  # fmt: skip
FLOW_DELTA: Schema = {
    "key": OTHER(lambda v, w: _build(FlowKey, FLOW_KEY, v, w)),
    "count": C, "first_ts": FLOAT(), "last_ts": FLOAT(), "sender_comm": TEXT, "target_comm": TEXT,
    "claimed": OTHER(_claim), "sender_cgroup": TEXT,
    "sender_uid": INT(-1, 2**32 - 1), "taken": C, "read": C, "discarded": C, "untracked": C,
    "suppressed": C, "suppressed_by": INT(0, 2**31),
    "latency": OTHER(_histogram),
}  # fmt: skip
THREAD_DELTA: Schema = {
    "tid": S32, "tgid": S32, "comm": TEXT, "sigreturns": C, "handler_deliveries": C, "deliveries": C,
    "last_ts": FLOAT(), "unmatched": OTHER(lambda v, w: None if v is None else _int(v, w, *COUNT)),
}  # fmt: skip
SIGNALFD_STATE: Schema = {
    "pid": S32, "fd": S32, "comm": TEXT, "mask": INT(*U64), "flags": S32, "calls": C,
    "created_ts": FLOAT(), "last_ts": FLOAT(),
}  # fmt: skip
U64_FIELD = INT(*U64)


def _flow_list(value: Any, where: str) -> FlowKey | None:
    """An event's flow key, stored as the list of its fields (compact: one per event)."""
    if value is None:
        return None
    items = _list(value, where)
    names = list(FLOW_KEY)
    if len(items) != len(names):
        raise RecordValueError(f"{where}: not the {len(names)} fields of a flow key")
    return FlowKey(*(_check(FLOW_KEY[n], v, f"{where}.{n}") for n, v in zip(names, items, strict=True)))


SIGNAL_EVENT: Schema = {
    "ts": FLOAT(), "kind": INT(0, 2**16), "sender_pid": S32, "sender_tid": S32, "target_pid": S32,
    "target_tgid": S32, "sig": S32, "code": S32, "result": INT(0, len(Result)), "ret": S32,
    "syscall": INT(0, 2**16), "arg_pid": S32, "arg_tid": S32, "info_pid": S32, "info_uid": S32,
    "info_value": U64_FIELD, "has_info": OTHER(_bool), "flags": S32, "group": S32, "handler": U64_FIELD,
    "sa_flags": U64_FIELD, "spoofed": N, "comm": TEXT, "ns_local": N, "target_comm": TEXT,
    "latency_ns": OTHER(lambda v, w: None if v is None else _int(v, w, *COUNT)), "taken_tid": S32,
    "flow": OTHER(_flow_list), "threads": C,
}  # fmt: skip
PROC_INFO: Schema = {
    "pid": S32, "tgid": S32, "comm": TEXT, "cmdline": TEXT, "user": TEXT, "uid": INT(-1, 2**32 - 1), "ppid": S32,
    "parents": OTHER(_parents), "cgroup": TEXT, "pidfds": OTHER(_pidfds), "started": FLOAT(),
    "start_ticks": INT(0, 2**63 - 1), "nspid": OTHER(_threads), "ns_pids": OTHER(_pidfds),
}  # fmt: skip
DISPOSITION: Schema = {
    "pid": S32, "caught": U64_FIELD, "ignored": U64_FIELD, "pending": U64_FIELD, "threads": OTHER(_pairs),
    "ts": FLOAT(), "exited": OTHER(_bool),
}  # fmt: skip
PENDING_FLOW: Schema = {"key": OTHER(lambda v, w: _build(FlowKey, FLOW_KEY, v, w)), "count": C, "since": FLOAT()}
KERNEL_STATS: Schema = {f.name: C for f in fields(KernelStats)}


def _each(cls: type, schema: Schema) -> tuple:
    return OTHER(lambda value, at: [_build(cls, schema, item, f"{at}[{i}]") for i, item in enumerate(_list(value, at))])


BATCH: Schema = {
    "ts": FLOAT(), "interval_s": FLOAT(0.0, 1e7),
    "flows": _each(FlowDelta, FLOW_DELTA), "threads": _each(ThreadDelta, THREAD_DELTA),
    "signalfds": _each(SignalfdState, SIGNALFD_STATE), "events": _each(SignalEvent, SIGNAL_EVENT),
    "procs": _each(ProcInfo, PROC_INFO), "stats": OTHER(lambda v, w: _build(KernelStats, KERNEL_STATS, v, w)),
    "final": OTHER(_bool), "program_misses": OTHER(_misses), "map_fill": OTHER(_fills),
    "pending": OTHER(lambda v, w: None if v is None else _each(PendingFlow, PENDING_FLOW)[1](v, w)),
    "dispositions": _each(Disposition, DISPOSITION), "cgroups": OTHER(_cgroup_paths),
    "deaths_followed": OTHER(lambda v, w: None if v is None else _bool(v, w)),
    "light": OTHER(lambda v, w: None if v is None else _bool(v, w)),
}  # fmt: skip


def _check(spec: tuple, value: Any, where: str) -> Any:
    kind = spec[0]
    if kind == "int":
        return _int(value, where, spec[1], spec[2])
    if kind == "float":
        return _float(value, where, spec[1], spec[2])
    if kind == "str":
        return _str(value, where)
    return spec[1](value, where)


_REQUIRED: dict[type, frozenset[str]] = {}


def _required(cls: type) -> frozenset[str]:
    found = _REQUIRED.get(cls)
    if found is None:
        found = _REQUIRED[cls] = frozenset(
            f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
        )
    return found


def _build(cls: type, schema: Schema, data: Any, where: str) -> Any:
    """An instance of a wire record from a JSON object, every field checked by its schema."""
    if type(data) is not dict:
        raise RecordValueError(f"{where}: {data!r:.40} is not an object")
    kwargs: dict[str, Any] = {}
    for name, spec in schema.items():
        if name not in data:
            if name in _required(cls):
                raise RecordValueError(f"{where}: no {name}")
            continue
        value = data[name]
        kind = spec[0]
        # The fast checks (exact types, in range); anything else gets the full check, which names it.
        if kind == "int":
            if type(value) is int and spec[1] <= value < spec[2]:
                kwargs[name] = value
                continue
        elif kind == "float":
            if (type(value) is float or type(value) is int) and spec[1] <= value <= spec[2]:
                kwargs[name] = float(value)
                continue
        elif kind == "str" and type(value) is str and len(value) <= MAX_TEXT:
            kwargs[name] = value
            continue
        kwargs[name] = _check(spec, value, f"{where}.{name}")
    return cls(**kwargs)


# ---- the two directions -------------------------------------------------------------------

EVENT_FIELDS = tuple(f.name for f in fields(SignalEvent))
_FLOW_EVENTS = (int(EventKind.generate), int(EventKind.send_done))


def event_json(event: SignalEvent) -> dict[str, Any]:
    """An event as a recording stores it (its flow key as the list of the key's fields)."""
    doc = {name: getattr(event, name) for name in EVENT_FIELDS}
    doc["flow"] = list(event.flow.as_tuple()) if event.flow is not None else None
    return doc


def batch_json(batch: Batch, with_events: bool = True) -> dict[str, Any]:
    """A batch as one JSON object (events last: a writer may stream them itself)."""
    events = batch.events
    batch.events = []
    try:
        data = asdict(batch)
    finally:
        batch.events = events
    data["events"] = [event_json(e) for e in events] if with_events else []
    return data


def batch_from_json(data: Any) -> Batch:
    """A batch from `batch_json` output, checking every value; RecordValueError names the first bad one."""
    batch = _build(Batch, BATCH, data, "batch")
    for event in batch.events:
        if event.flow is None and event.kind in _FLOW_EVENTS:
            event.flow = _legacy_flow_key(event)
    return batch


def _legacy_flow_key(e: SignalEvent) -> FlowKey:
    """The flow key of an event recorded before events carried it, from the event's own fields.

    The kernel's key differs from the event in four ways (bpf send_exit and on_generate):
    * an event's sender is `current`'s process even for a kernel-raised signal, the key's 0 (but
      for a SIGCHLD with a CLD_* code, raised on the child that changed state: it is the sender);
    * a failed send's key keeps neither the asked target nor the code (the caller chooses them
      freely), except for EPERM, whose target exists; its errno is the syscall's negative return;
    * a send of no signal at all (EINVAL) has SIG_INVALID as its key's signal;
    * a caller-made si_code the kernel does not define is CODE_OTHER in the key.
    """
    err = -e.ret if e.ret < 0 else 0
    if e.result == Result.failed:
        keep_target = err == errno.EPERM and e.syscall != Syscall.pidfd_send_signal
        sig = e.sig if 0 <= e.sig <= 64 else SIG_INVALID
        return FlowKey(
            e.sender_pid,
            e.target_pid if keep_target else 0,
            e.target_tgid if keep_target else 0,
            sig,
            0,
            err,
            e.syscall,
            e.result,
            ns_local=e.ns_local,
        )
    child_changed = e.sig == signal.SIGCHLD and CLD_EXITED <= e.code <= CLD_CONTINUED
    return FlowKey(
        sender_pid=e.sender_pid if e.syscall != Syscall.kernel or child_changed else 0,
        target_pid=e.target_pid,
        target_tgid=e.target_tgid,
        sig=e.sig,
        code=known_code(e.code),
        err=err,
        syscall=e.syscall,
        result=e.result,
        spoofed=e.spoofed,
        ns_local=e.ns_local,
    )
