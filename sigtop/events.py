"""Detail events as the ring buffer carries them: packed records, decoded by kind, on demand.

`struct event` (bpf/sigtop.h) is a header and one payload per kind, each
named. Every layout here is derived from that declaration (sigtop.abi), never
written by hand: the header and the flow key that the model reads from every
event (`EventBlock.hot`), and a decoder per kind that builds a `SignalEvent`
(the recording's shape) from that kind's own payload.

A storm brings 100,000 events a second, and building an object for each
would cost more than all the rest of sigtop: the model reads the hot fields
of every record (one C call for the block) and decodes only what it keeps.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sigtop.abi import field_layout, kernel_abi
from sigtop.lru import BoundedLRU
from sigtop.names import EventKind
from sigtop.wire import FlowKey, SignalEvent

COMM_CACHE = 4096  # distinct comms decoded once each, the most recent kept
# struct flow_key's fields as FlowKey names them (the kernel's sender_tgid is the sender's process).
FLOW_FIELDS = (
    "sender_tgid", "target_pid", "target_tgid", "sig", "code", "err", "syscall", "result", "spoofed", "ns_local",
)  # fmt: skip
HEADER_FIELDS = ("ts", "kind", "tgid", "tid")

# What each kind's payload fills in a SignalEvent (whose field names are the recordings'):
# SignalEvent field -> payload field. The header gives ts, kind, sender_pid (tgid), sender_tid (tid).
_KIND_FIELDS: dict[int, tuple[str, dict[str, str]]] = {
    EventKind.generate: ("send", {}),
    EventKind.send_done: ("send", {}),
    EventKind.deliver: ("deliver", {"sig": "sig", "code": "code", "handler": "sa_handler", "sa_flags": "sa_flags"}),
    EventKind.signalfd: (
        "signalfd",
        {
            "handler": "mask",
            "arg_pid": "ufd",
            "ret": "ret",
            "flags": "flags",
            "syscall": "syscall",
            "has_info": "mask_ok",
            "comm": "comm",
        },
    ),
    EventKind.unmatched_sigreturn: ("sigreturn", {"comm": "comm"}),
    EventKind.death: (
        "death",
        {
            "sig": "sig",
            "code": "code",
            "target_pid": "parent_pid",
            "target_tgid": "parent_tgid",
            "info_value": "lifetime_ns",
            "handler": "cgroup_id",
            "comm": "comm",
            "threads": "threads_killed",
        },
    ),
    EventKind.oom: ("oom", {"sender_pid": "pid", "target_tgid": "pid", "info_uid": "uid", "info_value": "anon_rss_kb"}),
    EventKind.sigaction: ("sigaction", {"sig": "sig", "handler": "handler", "sa_flags": "flags"}),
}
_SEND_FIELDS = {
    name: name
    for name in (
        "sig",
        "code",
        "target_pid",
        "target_tgid",
        "ret",
        "group",
        "arg_pid",
        "arg_tid",
        "info_pid",
        "info_uid",
        "info_value",
        "flags",
        "has_info",
        "comm",
    )
}


def comm_text(raw: bytes) -> str:
    """A kernel comm (NUL-padded bytes) as text; undecodable bytes replaced."""
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def ktime_to_wall(mono_to_wall: float, ktime_ns: int) -> float:
    """A kernel time (bpf_ktime_get_ns: CLOCK_MONOTONIC ns) as wall-clock seconds, given the offset
    of the two clocks (live.clock.SourceClock.mono_to_wall): the one conversion, for the events'
    times and the maps' alike."""
    return mono_to_wall + ktime_ns / 1e9


def wall_to_ktime(mono_to_wall: float, wall: float) -> int:
    """ktime_to_wall's inverse, to the nearest ns (a recording's events packed as the kernel packs them)."""
    return round((wall - mono_to_wall) * 1e9)


def _code(size: int, signed: bool) -> str:
    return {1: "b", 2: "h", 4: "i", 8: "q"}[size].lower() if signed else {1: "B", 2: "H", 4: "I", 8: "Q"}[size]


def _leaf_types(ctype: type) -> dict[str, type]:
    """Each leaf field's ctypes type, by its dotted path (as field_layout names them)."""
    out: dict[str, type] = {}

    def walk(t: type, prefix: str) -> None:
        for name, ftype in t._fields_:
            if isinstance(ftype, type) and issubclass(ftype, ctypes.Structure | ctypes.Union):
                walk(ftype, f"{prefix}{name}.")
            else:
                out[f"{prefix}{name}"] = ftype

    walk(ctype, "")
    return out


def record_struct(ctype: type, wanted: Sequence[str], skip: int, stride: int) -> struct.Struct:
    """A struct.Struct over one record of `stride` bytes whose event starts at `skip`, reading the
    fields named (dotted paths, in the order given; each must follow the last) and skipping the rest."""
    layout = {path: (offset, size) for path, offset, size in field_layout(ctype)}
    types = _leaf_types(ctype)
    fmt = ["<", f"{skip}x" if skip else ""]
    pos = 0
    for path in wanted:
        offset, size = layout[path]
        if offset < pos:
            raise ValueError(f"{path} is not after the field before it")
        if offset > pos:
            fmt.append(f"{offset - pos}x")
        ftype = types[path]
        if issubclass(ftype, ctypes.Array):
            fmt.append(f"{size}s")
        else:
            fmt.append(_code(size, ftype._type_.islower()))
        pos = offset + size
    fmt.append(f"{stride - skip - pos}x")
    return struct.Struct("".join(fmt))


@dataclass(frozen=True)
class EventLayout:
    """How a block's records are laid out: the event at `skip` bytes into each `stride`-byte record."""

    stride: int
    skip: int
    hot: struct.Struct  # the header and the send payload's flow key
    deliver_sig: struct.Struct  # a delivery's signal (where the kind is deliver)
    kinds: dict[int, tuple[struct.Struct, list[str], dict[str, str]]]  # kind -> its layout, fields, mapping
    kind_offset: int  # where the kind's low byte is in a record

    @classmethod
    def for_records(cls, skip: int, stride: int) -> EventLayout:
        """The layout of records of `stride` bytes holding a struct event at `skip` (a ring buffer's)."""
        event = kernel_abi().struct("event")
        if skip + ctypes.sizeof(event) > stride:
            raise ValueError(f"a {stride}-byte record cannot hold a {ctypes.sizeof(event)}-byte event")
        head = [f"head.{n}" for n in HEADER_FIELDS]
        hot = record_struct(event, [*head, *(f"u.send.flow.{n}" for n in FLOW_FIELDS)], skip, stride)
        deliver_sig = record_struct(event, ["u.deliver.sig"], skip, stride)
        leaves = [path for path, _offset, _size in field_layout(event)]
        kinds = {}
        for kind, (payload, mapping) in _KIND_FIELDS.items():
            paths = [p for p in leaves if p.startswith(f"u.{payload}.") and not p.endswith(".pad")]
            names = [p.removeprefix(f"u.{payload}.") for p in paths]
            kinds[int(kind)] = (record_struct(event, head + paths, skip, stride), names, mapping or _SEND_FIELDS)
        return cls(stride, skip, hot, deliver_sig, kinds, skip + _offset(event, "head.kind"))


def _offset(ctype: type, path: str) -> int:
    return next(offset for p, offset, _size in field_layout(ctype) if p == path)


class EventBlock(Sequence[SignalEvent]):
    """Detail events as the ring buffer held them: packed records, decoded on demand.

    Indexing and iterating decode (each kind by its own payload); `hot` reads
    the fields the model needs from every record without building events.
    """

    __slots__ = ("_comms", "data", "layout", "mono_to_wall")

    def __init__(self, data: bytes | bytearray | memoryview, layout: EventLayout, mono_to_wall: float) -> None:
        self.data = data
        self.layout = layout
        self.mono_to_wall = mono_to_wall  # the kernel's ns ktime to wall-clock seconds
        self._comms: BoundedLRU[bytes, str] = BoundedLRU(COMM_CACHE)

    def __len__(self) -> int:
        return len(self.data) // self.layout.stride

    def __getitem__(self, i: int | slice) -> Any:
        stride = self.layout.stride
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self))
            if step != 1:
                raise ValueError("an EventBlock slices without a step")
            window = memoryview(self.data)[start * stride : max(start, stop) * stride]  # no copy
            return EventBlock(window, self.layout, self.mono_to_wall)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._decode(i * stride)

    def __iter__(self) -> Iterator[SignalEvent]:
        return (self._decode(at) for at in range(0, len(self.data) - self.layout.stride + 1, self.layout.stride))

    def kinds(self) -> bytes:
        """Each record's kind (its low byte), in order: one C slice, no decoding."""
        return bytes(memoryview(self.data)[self.layout.kind_offset :: self.layout.stride])

    def hot(self) -> Iterator[tuple]:
        """(ts in the kernel's ns, kind, tgid, tid, flow key tuple, delivered signal) of every record.

        The flow key is meaningful for generate and send-done events, the
        delivered signal for deliveries."""
        hot = self.layout.hot.iter_unpack(self.data)
        if bytes([int(EventKind.deliver)]) not in self.kinds():
            return ((t[0], t[1], t[2], t[3], t[4:], 0) for t in hot)
        signals = self.layout.deliver_sig.iter_unpack(self.data)
        return ((t[0], t[1], t[2], t[3], t[4:], d[0]) for t, d in zip(hot, signals, strict=True))

    def tail(self, n: int) -> EventBlock:
        return EventBlock(self.data[-n * self.layout.stride :] if n else b"", self.layout, self.mono_to_wall)

    def extended(self, later: EventBlock) -> EventBlock:
        return EventBlock(b"".join((self.data, later.data)), self.layout, self.mono_to_wall)  # any buffers

    def _comm(self, raw: bytes) -> str:
        text = self._comms.get(raw)
        if text is None:
            text = comm_text(raw)
            self._comms.put(raw, text)
        return text

    def _decode(self, at: int) -> SignalEvent:
        kind = self.data[self.layout.kind_offset + at]
        known = self.layout.kinds.get(kind)
        if known is None:  # a kind a newer program sends: the header alone
            ts, kind, tgid, tid = self.layout.hot.unpack_from(self.data, at)[:4]
            return SignalEvent(ktime_to_wall(self.mono_to_wall, ts), kind, tgid, tid, 0, 0, 0, 0, 0, 0, 0)
        layout, names, mapping = known
        values = layout.unpack_from(self.data, at)
        ts, kind, tgid, tid = values[:4]
        payload = dict(zip(names, values[4:], strict=True))
        fields: dict[str, Any] = {"sender_pid": tgid}
        for field_name, payload_name in mapping.items():
            fields[field_name] = payload[payload_name]
        if "comm" in fields:
            fields["comm"] = self._comm(fields["comm"])
        if "has_info" in fields:
            fields["has_info"] = bool(fields["has_info"])
        if mapping is _SEND_FIELDS:
            flow = FlowKey(*(payload[f"flow.{n}"] for n in FLOW_FIELDS))
            fields.update(flow=flow, result=flow.result, syscall=flow.syscall, spoofed=flow.spoofed)
            fields["ns_local"] = flow.ns_local
        elif kind in (EventKind.deliver, EventKind.unmatched_sigreturn):
            fields.update(target_pid=tid, target_tgid=tgid)
        elif kind == EventKind.sigaction:
            fields.update(target_pid=tgid, target_tgid=tgid)
        base = dict.fromkeys(("target_pid", "target_tgid", "sig", "code", "result", "ret", "syscall"), 0)
        return SignalEvent(ts=ktime_to_wall(self.mono_to_wall, ts), kind=kind, sender_tid=tid, **{**base, **fields})


def hot_events(events: Sequence[SignalEvent]) -> tuple[Iterable[tuple], float]:
    """The hot fields of each event (as EventBlock.hot gives them), and ns per unit of their ts.

    A block's ts are the kernel's integer ns; a list's, wall-clock seconds
    (whose float has no room left for nanoseconds, so only differences of
    them are scaled).
    """
    if isinstance(events, EventBlock):
        return events.hot(), 1

    def hot(e: SignalEvent) -> tuple:
        return (e.ts, e.kind, e.sender_pid, e.sender_tid, e.flow.as_tuple() if e.flow is not None else None, e.sig)

    return map(hot, events), 1e9


def pack_records(events: Iterable[SignalEvent], layout: EventLayout, mono_to_wall: float) -> bytes:
    """Records as the kernel writes them into the ring buffer, for events (the inverse of decoding:
    a recording's events as a block, and the tests' way to hold EventBlock to the decoded path)."""
    event_type = kernel_abi().struct("event")
    out = bytearray()
    for e in events:
        record = event_type()
        record.head.ts = wall_to_ktime(mono_to_wall, e.ts)
        record.head.kind, record.head.tgid, record.head.tid = e.kind, e.sender_pid, e.sender_tid
        known = _KIND_FIELDS.get(e.kind)
        if known is not None:
            payload_name, mapping = known
            payload = getattr(record.u, payload_name)
            for field_name, payload_field in (mapping or _SEND_FIELDS).items():
                if field_name == "sender_pid":
                    continue
                value = getattr(e, field_name)
                setattr(payload, payload_field, value.encode() if isinstance(value, str) else int(value))
            if not mapping and e.flow is not None:
                for name, value in zip(FLOW_FIELDS, e.flow.as_tuple(), strict=True):
                    setattr(payload.flow, name, value)
            if e.kind == EventKind.oom:
                record.head.tgid = 0  # the header names the allocating task, the payload the victim
        out += bytes(layout.skip) + bytes(record) + bytes(layout.stride - layout.skip - ctypes.sizeof(record))
    return bytes(out)
