"""The ring buffer's `struct event`, as BCC laid it out: a struct.Struct over each record, and its decoder.

Derived from BCC's own ctypes class (built from bpf/sigtop.h), never written
by hand, so the Python side cannot drift from the C.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable, Sequence
from operator import itemgetter

from sigtop.live import ringbuf
from sigtop.live.preflight import CollectorError
from sigtop.records import HOT_FIELDS, EventLayout, SignalEvent

COMM_CACHE = 4096  # distinct comms decoded once each, then the cache starts again


def comm_text(raw: bytes) -> str:
    """A kernel comm (NUL-padded bytes) as text; undecodable bytes replaced."""
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def _record_struct(ctype: type, wanted: Sequence[str] | None = None) -> tuple[struct.Struct, list[str]]:
    """A struct.Struct over one ring-buffer record holding a BCC ctypes event.

    Derived from the ctypes class's own layout (which BCC built from the C),
    with the record's header and tail padding skipped; `wanted` keeps only
    those fields, the rest becoming padding, so the unpack builds less.
    """
    stride = ringbuf.record_size(ctypes.sizeof(ctype))
    fmt = ["<", f"{ringbuf.HEADER_SIZE}x"]
    names: list[str] = []
    pos = 0
    for name, ftype in ctype._fields_:
        if wanted is not None and name not in wanted:
            continue
        desc = getattr(ctype, name)
        if desc.offset > pos:
            fmt.append(f"{desc.offset - pos}x")
        if issubclass(ftype, ctypes.Array):
            fmt.append(f"{desc.size}s")
        else:
            # '<' means standard sizes, so pick the code by the field's real size.
            code = {1: "b", 2: "h", 4: "i", 8: "q"}[desc.size]
            fmt.append(code if ftype._type_.islower() else code.upper())
        names.append(name)
        pos = desc.offset + desc.size
    fmt.append(f"{stride - ringbuf.HEADER_SIZE - pos}x")
    return struct.Struct("".join(fmt)), names


# HOT_FIELDS name the sender by process (sender_pid); the C says sender_tgid.
C_HOT_FIELDS = ["sender_tgid" if n == "sender_pid" else n for n in HOT_FIELDS]


def event_layout(ctype: type) -> EventLayout:
    full, names = _record_struct(ctype)
    hot, hot_names = _record_struct(ctype, C_HOT_FIELDS)
    if hot_names != C_HOT_FIELDS:
        raise CollectorError(f"struct event's fields are not in the order the model reads them: {hot_names}")
    return EventLayout(full=full, hot=hot, decode=_event_decoder(names))


DECODED_FIELDS = (
    "kind", "sender_tgid", "sender_tid", "target_pid", "target_tgid", "sig", "code", "result",
    "ret", "syscall", "arg_pid", "arg_tid", "info_pid", "info_uid", "info_value",
)  # fmt: skip
# Decoded after those, by name: has_info, flags, group, handler, sa_flags, spoofed, comm.


def _event_decoder(names: list[str]) -> Callable[[tuple, float], SignalEvent]:
    """Turn one unpacked `struct event` into a SignalEvent (each distinct comm decoded once)."""
    at = {name: i for i, name in enumerate(names)}
    fields = itemgetter(*(at[n] for n in DECODED_FIELDS))
    i_ts, i_has_info, i_flags, i_group = at["ts"], at["has_info"], at["flags"], at["group"]
    i_handler, i_sa_flags, i_comm, i_spoofed = at["handler"], at["sa_flags"], at["comm"], at["spoofed"]
    i_ns_local = at["ns_local"]
    comms: dict[bytes, str] = {}

    def comm(raw: bytes) -> str:
        text = comms.get(raw)
        if text is None:
            if len(comms) > COMM_CACHE:
                comms.clear()
            text = comms[raw] = comm_text(raw)
        return text

    def decode(t: tuple, mono_to_wall: float) -> SignalEvent:
        return SignalEvent(
            mono_to_wall + t[i_ts] / 1e9,
            *fields(t),
            bool(t[i_has_info]),
            t[i_flags],
            t[i_group],
            t[i_handler],
            t[i_sa_flags],
            t[i_spoofed],
            comm(t[i_comm]),
            t[i_ns_local],
        )

    return decode
