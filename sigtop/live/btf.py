"""The running kernel's own type information (BTF): member offsets the BPF program may read.

sigtop's C is compiled against the nearest Debian headers, not this
kernel's, so it never takes a kernel struct's layout from them. Where a
program must read a kernel struct (the target task of a raw
`signal_generate`), the offsets come from /sys/kernel/btf/vmlinux and reach
the C as -D flags. Where anything here is missing or has another shape, the
caller falls back to the classic tracepoint, which needs no offsets.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

VMLINUX = Path("/sys/kernel/btf/vmlinux")
MAGIC = 0xEB9F
# BTF kinds (include/uapi/linux/btf.h) and the bytes each adds after its 12-byte header.
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT = 9, 10, 11, 12, 13, 14, 15, 16
DECL_TAG, TYPE_TAG, ENUM64 = 17, 18, 19
_FIXED_EXTRA = {INT: 4, ARRAY: 12, VAR: 4, DECL_TAG: 4}
_PER_MEMBER = {STRUCT: 12, UNION: 12, ENUM: 8, FUNC_PROTO: 8, DATASEC: 12, ENUM64: 12}
_QUALIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)


class BtfError(Exception):
    pass


@dataclass(frozen=True)
class BtfType:
    id: int
    kind: int
    name: str
    size_or_type: int
    members: tuple[tuple[str, int, int], ...]  # (name, type id, bit offset) for structs; (name, type) params


class Btf:
    """The types of one BTF blob, by id and by (kind, name)."""

    def __init__(self, blob: bytes) -> None:
        if len(blob) < 24:
            raise BtfError("BTF blob too short")
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", blob)
        if magic != MAGIC:
            raise BtfError("not BTF (bad magic)")
        types = blob[hdr_len + type_off : hdr_len + type_off + type_len]
        self._strings = blob[hdr_len + str_off : hdr_len + str_off + str_len]
        self.by_id: dict[int, BtfType] = {}
        self.by_name: dict[tuple[int, str], BtfType | None] = {}
        self._parse(types)

    def _name(self, offset: int) -> str:
        end = self._strings.find(b"\0", offset)
        return self._strings[offset:end].decode(errors="replace")

    def _parse(self, types: bytes) -> None:
        """Walk every type (each must be stepped over), keeping only structs, typedefs,
        pointers, qualifiers and prototypes: all a member offset or a prototype needs."""
        unpack = struct.unpack_from
        fixed, per_member = _FIXED_EXTRA, _PER_MEMBER
        kept: dict[int, tuple[int, int, int, int, int, int]] = {}  # id -> kind, name_off, size_or_type, pos, vlen, flag
        keep = frozenset((STRUCT, UNION, FWD, TYPEDEF, PTR, FUNC_PROTO, INT, CONST, VOLATILE, RESTRICT, TYPE_TAG))
        pos, type_id, end = 0, 1, len(types)
        while pos + 12 <= end:
            name_off, info, size_or_type = unpack("<III", types, pos)
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            if kind in keep:
                kept[type_id] = (kind, name_off, size_or_type, pos + 12, vlen, info >> 31)
            pos += 12 + fixed.get(kind, 0) + per_member.get(kind, 0) * vlen
            type_id += 1
        self._types = types
        self._kept = kept

    def _entry(self, type_id: int) -> BtfType | None:
        found = self.by_id.get(type_id)
        if found is not None or type_id not in self._kept:
            return found
        kind, name_off, size_or_type, pos, vlen, kind_flag = self._kept[type_id]
        members: tuple[tuple[str, int, int], ...] = ()
        if kind in (STRUCT, UNION):
            members = tuple(
                (self._name(m_name), m_type, (m_off & 0xFFFFFF) if kind_flag else m_off)
                for m_name, m_type, m_off in struct.iter_unpack("<III", self._types[pos : pos + 12 * vlen])
            )
        elif kind == FUNC_PROTO:
            members = tuple(
                (self._name(p_name), p_type, 0)
                for p_name, p_type in struct.iter_unpack("<II", self._types[pos : pos + 8 * vlen])
            )
        entry = self.by_id[type_id] = BtfType(type_id, kind, self._name(name_off), size_or_type, members)
        return entry

    def _find(self, kind: int, name: str) -> BtfType | None:
        """The first type of this kind with this name (its name found once in the string section)."""
        key = (kind, name)
        if key in self.by_name:
            return self.by_name[key]
        needle = b"\0" + name.encode() + b"\0"
        offsets = set()
        at = self._strings.find(needle)
        while at >= 0:
            offsets.add(at + 1)
            at = self._strings.find(needle, at + 1)
        found = next(
            (self._entry(i) for i, t in self._kept.items() if t[0] == kind and t[1] in offsets),
            None,
        )
        self.by_name[key] = found
        return found

    def struct(self, name: str) -> BtfType:
        found = self._find(STRUCT, name)
        if found is None:
            raise BtfError(f"struct {name} is not in the kernel's BTF")
        return found

    def member_offset(self, struct_name: str, member: str) -> int:
        """Byte offset of a member of a struct (not a bitfield), also one inside an anonymous
        union or struct (pt_regs' cs shares one with FRED's fields since 6.9)."""
        found = self._member_bits(self.struct(struct_name), member)
        if found is None:
            raise BtfError(f"struct {struct_name} has no member {member}")
        if found % 8:
            raise BtfError(f"{struct_name}.{member} is a bitfield")
        return found // 8

    def _member_bits(self, entry: BtfType, member: str) -> int | None:
        for name, type_id, bit_offset in entry.members:
            if name == member:
                return bit_offset
            inner = self._entry(type_id) if not name else None
            if inner is not None and inner.kind in (STRUCT, UNION):
                found = self._member_bits(inner, member)
                if found is not None:
                    return bit_offset + found
        return None

    def describe(self, type_id: int) -> str:
        """A type as C would name it, enough to compare prototypes: 'int', 'struct task_struct *'."""
        if type_id == 0:
            return "void"
        entry = self._entry(type_id)
        if entry is None:
            return f"#{type_id}"
        if entry.kind == PTR:
            return self.describe(entry.size_or_type) + " *"
        if entry.kind in (CONST, VOLATILE, RESTRICT, TYPE_TAG):
            return self.describe(entry.size_or_type)
        if entry.kind in (STRUCT, UNION, FWD):
            return f"struct {entry.name}"
        return entry.name

    def raw_tracepoint_args(self, event: str) -> list[str]:
        """The argument types a raw tracepoint hands its programs (its btf_trace_ typedef, less __data)."""
        typedef = self._find(TYPEDEF, f"btf_trace_{event}")
        if typedef is None:
            raise BtfError(f"no btf_trace_{event} in the kernel's BTF")
        pointer = self._entry(typedef.size_or_type)
        proto = self._entry(pointer.size_or_type) if pointer and pointer.kind == PTR else None
        if proto is None or proto.kind != FUNC_PROTO:
            raise BtfError(f"btf_trace_{event} is not a function pointer")
        return [self.describe(p_type) for _name, p_type, _ in proto.members][1:]


def load_vmlinux(path: Path = VMLINUX) -> Btf:
    try:
        return Btf(path.read_bytes())
    except OSError as exc:
        raise BtfError(f"cannot read {path}: {exc.strerror}") from None
