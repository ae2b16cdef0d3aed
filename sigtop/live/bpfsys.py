"""The bpf(2) and perf_event_open(2) calls sigtop makes itself, through ctypes.

BCC compiles the program (in a short-lived child, sigtop.live.build); the
process that traces loads, attaches and reads it with these calls alone, so
it never maps LLVM (about 75 MB) and a program compiled once is reused
(sigtop.live.objects). The attribute layouts are union bpf_attr's and
struct perf_event_attr's (include/uapi/linux/bpf.h, perf_event.h), x86_64.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import struct

NR_BPF, NR_PERF_EVENT_OPEN = 321, 298  # x86_64

BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_PROG_LOAD = 5
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_BTF_LOAD = 18
BPF_BTF_GET_FD_BY_ID = 19
BPF_MAP_LOOKUP_AND_DELETE_ELEM = 21
BPF_MAP_LOOKUP_BATCH = 24
ATTR_SIZE = 128

PERF_TYPE_TRACEPOINT = 2
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408
PERF_ATTR_SIZE = 128

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _call(nr: int, *args: object) -> int:
    result = _libc.syscall(nr, *args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def bpf(cmd: int, attr: bytes | ctypes.Array) -> int:
    """One bpf(2) call: its result (an fd for the commands that make one); OSError with the errno."""
    buffer = attr if isinstance(attr, ctypes.Array) else ctypes.create_string_buffer(attr, ATTR_SIZE)
    return _call(NR_BPF, cmd, buffer, ATTR_SIZE)


def _addr(buffer: ctypes.Array | None) -> int:
    return ctypes.addressof(buffer) if buffer is not None else 0


def lookup(map_fd: int, key: bytes, value_size: int) -> bytes | None:
    key_buf, value_buf = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value_size)
    try:
        bpf(BPF_MAP_LOOKUP_ELEM, struct.pack("<I4xQQQ", map_fd, _addr(key_buf), _addr(value_buf), 0))
    except FileNotFoundError:
        return None
    return value_buf.raw


def update(map_fd: int, key: bytes, value: bytes) -> None:
    key_buf, value_buf = ctypes.create_string_buffer(key, len(key)), ctypes.create_string_buffer(value, len(value))
    bpf(BPF_MAP_UPDATE_ELEM, struct.pack("<I4xQQQ", map_fd, _addr(key_buf), _addr(value_buf), 0))


def delete(map_fd: int, key: bytes) -> bool:
    """Remove one element; False if it was not there."""
    key_buf = ctypes.create_string_buffer(key, len(key))
    try:
        bpf(BPF_MAP_DELETE_ELEM, struct.pack("<I4xQ", map_fd, _addr(key_buf)))
    except FileNotFoundError:
        return False
    return True


def lookup_and_delete(map_fd: int, key: bytes, value_size: int) -> bytes | None:
    """Remove one element and return its last value, atomically (None if it was gone).

    A lookup then a delete would lose whatever was added between the two;
    this returns exactly what the element held when it was unlinked.
    """
    key_buf = ctypes.create_string_buffer(key, len(key))
    value_buf = ctypes.create_string_buffer(value_size)
    attr = struct.pack("<I4xQQQ", map_fd, _addr(key_buf), _addr(value_buf), 0)
    try:
        bpf(BPF_MAP_LOOKUP_AND_DELETE_ELEM, attr)
    except FileNotFoundError:
        return None
    return value_buf.raw


def lookup_batch(map_fd: int, key_size: int, value_size: int, capacity: int) -> tuple[bytes, bytes, int]:
    """Every element of a map in as few calls as its size allows: (keys, values, count), packed.

    `value_size` is what one element's value takes in the copy (a per-CPU map's
    is every CPU's, each rounded up to 8 bytes)."""
    chunk = max(1, min(capacity, 4096))
    keys, values = ctypes.create_string_buffer(key_size * chunk), ctypes.create_string_buffer(value_size * chunk)
    token_in, token_out = ctypes.create_string_buffer(max(key_size, 8)), ctypes.create_string_buffer(max(key_size, 8))
    out_keys, out_values, total = [], [], 0
    first = True
    while True:
        attr = ctypes.create_string_buffer(
            struct.pack(
                "<QQQQII", 0 if first else _addr(token_in), _addr(token_out), _addr(keys), _addr(values), chunk, map_fd
            ),
            ATTR_SIZE,
        )
        done = False
        try:
            bpf(BPF_MAP_LOOKUP_BATCH, attr)
        except FileNotFoundError:
            done = True  # the last elements are in this copy too
        count = struct.unpack_from("<I", attr, 32)[0]
        out_keys.append(keys.raw[: key_size * count])
        out_values.append(values.raw[: value_size * count])
        total += count
        if done or count == 0:
            return b"".join(out_keys), b"".join(out_values), total
        ctypes.memmove(token_in, token_out, len(token_out))
        first = False


def obj_info(fd: int, size: int) -> bytes:
    """bpf_prog_info (or another object's info) of an fd, `size` bytes of it."""
    info = ctypes.create_string_buffer(size)
    bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", fd, size, _addr(info)))
    return info.raw


def map_create(
    map_type: int,
    key_size: int,
    value_size: int,
    max_entries: int,
    flags: int,
    name: str,
    btf_fd: int = 0,
    btf_key: int = 0,
    btf_value: int = 0,
) -> int:
    attr = struct.pack(
        "<IIIIIII16sIIIII",
        map_type,
        key_size,
        value_size,
        max_entries,
        flags,
        0,  # inner_map_fd
        0,  # numa_node
        name.encode()[:15],
        0,  # map_ifindex
        btf_fd,
        btf_key,
        btf_value,
        0,  # btf_vmlinux_value_type_id
    )
    return bpf(BPF_MAP_CREATE, attr)


def btf_load(data: bytes) -> int:
    blob = ctypes.create_string_buffer(data, len(data))
    return bpf(BPF_BTF_LOAD, struct.pack("<QQIII", _addr(blob), 0, len(data), 0, 0))


def btf_data(btf_id: int) -> bytes:
    """The raw BTF of a loaded BTF object, by id (what the compiler emitted for the program)."""
    fd = bpf(BPF_BTF_GET_FD_BY_ID, struct.pack("<I", btf_id))
    try:
        size = struct.unpack_from("<I", obj_info_btf(fd, 0), 8)[0]
        data = ctypes.create_string_buffer(size)
        obj_info_btf(fd, size, data)
        return data.raw
    finally:
        os.close(fd)


def obj_info_btf(fd: int, size: int, data: ctypes.Array | None = None) -> bytes:
    """struct bpf_btf_info (btf, btf_size, id, ...), filling `data` with the BTF when given."""
    info = ctypes.create_string_buffer(struct.pack("<QII", _addr(data), size, 0), 32)
    bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", fd, 32, _addr(info)))
    return info.raw


def prog_load(prog_type: int, insns: bytes, name: str, license: bytes = b"GPL", kern_version: int = 0) -> int:
    """Load one program; OSError with the verifier's last words when it refuses."""
    code = ctypes.create_string_buffer(insns, len(insns))
    licence = ctypes.create_string_buffer(license)

    def attr(log: ctypes.Array | None) -> bytes:
        return struct.pack(
            "<IIQQIIQII16s",
            prog_type,
            len(insns) // 8,
            _addr(code),
            _addr(licence),
            1 if log is not None else 0,
            len(log) if log is not None else 0,
            _addr(log),
            kern_version,
            0,  # prog_flags
            name.encode()[:15],
        )

    try:
        return bpf(BPF_PROG_LOAD, attr(None))
    except OSError as exc:
        if exc.errno not in (13, 22):  # EACCES, EINVAL: the verifier's; ask it why
            raise
        log = ctypes.create_string_buffer(1 << 20)
        try:
            return bpf(BPF_PROG_LOAD, attr(log))  # the log's bigger buffer can change nothing, but be sure
        except OSError as again:
            lines = [line for line in log.value.decode(errors="replace").splitlines() if line.strip()]
            raise OSError(again.errno, f"{os.strerror(again.errno)}: {lines[-1] if lines else 'no log'}") from None


def raw_tracepoint_open(name: str, prog_fd: int) -> int:
    text = ctypes.create_string_buffer(name.encode())
    return bpf(BPF_RAW_TRACEPOINT_OPEN, struct.pack("<QI", _addr(text), prog_fd))


def tracepoint_attach(tracepoint_id: int, prog_fd: int) -> int:
    """A perf event on the tracepoint running the program, on every CPU (as BCC and libbpf make it)."""
    attr = ctypes.create_string_buffer(
        struct.pack("<IIQQQQQI", PERF_TYPE_TRACEPOINT, PERF_ATTR_SIZE, tracepoint_id, 1, PERF_SAMPLE_RAW, 0, 0, 1),
        PERF_ATTR_SIZE,
    )
    fd = _call(NR_PERF_EVENT_OPEN, attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
    try:
        fcntl.ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd)
        fcntl.ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
    except OSError:
        os.close(fd)
        raise
    return fd


def perf_event_disable(fd: int) -> None:
    fcntl.ioctl(fd, PERF_EVENT_IOC_DISABLE, 0)
