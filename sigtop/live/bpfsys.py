"""The bpf(2) commands BCC does not wrap the way sigtop needs them, called directly."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct

NR_BPF = 321  # x86_64
BPF_MAP_LOOKUP_AND_DELETE_ELEM = 21
BPF_OBJ_GET_INFO_BY_FD = 15
ATTR_SIZE = 128

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def bpf(cmd: int, attr: bytes) -> None:
    """One bpf(2) call; OSError with the errno on failure."""
    buffer = ctypes.create_string_buffer(attr, ATTR_SIZE)
    if _libc.syscall(NR_BPF, cmd, buffer, ATTR_SIZE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def lookup_and_delete(map_fd: int, key: bytes, value_size: int) -> bytes | None:
    """Remove one element and return its last value, atomically (None if it was gone).

    A lookup then a delete would lose whatever was added between the two;
    this returns exactly what the element held when it was unlinked.
    """
    key_buf = ctypes.create_string_buffer(key, len(key))
    value_buf = ctypes.create_string_buffer(value_size)
    attr = struct.pack("<I4xQQQ", map_fd, ctypes.addressof(key_buf), ctypes.addressof(value_buf), 0)
    try:
        bpf(BPF_MAP_LOOKUP_AND_DELETE_ELEM, attr)
    except FileNotFoundError:
        return None
    return value_buf.raw


def obj_info(fd: int, size: int) -> bytes:
    """bpf_prog_info (or another object's info) of an fd, `size` bytes of it."""
    info = ctypes.create_string_buffer(size)
    bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", fd, size, ctypes.addressof(info)))
    return info.raw
