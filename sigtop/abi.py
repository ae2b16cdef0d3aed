"""The kernel ABI as Python sees it: bpf/sigtop.h read once, its enums, constants and structs.

The header is the one definition of everything the BPF programs and Python
share. Python never restates a value or a layout: the enums (Syscall,
Result, EventKind, the stat slots), the constants (CODE_OTHER, LAT_BUCKETS,
...) and every struct (as a ctypes class laid out as the C compiler lays it
out on this ABI: natural alignment, no packing) come from reading it here.
tests/test_abi.py holds these layouts against what BCC compiled.

The header is kept to a subset of C this reader understands, and refuses
anything else loudly: `enum NAME { A = 1, B, ... };`, `struct NAME { ... };`
with fields of the fixed-width types (u8..u64, s8..s64, char, int), arrays
of them, named structs, and unions of structs; `#define NAME <integer
expression>`.
"""

from __future__ import annotations

import ast
import ctypes
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

HEADER = "sigtop.h"

_SCALARS: dict[str, type] = {
    "u8": ctypes.c_uint8,
    "u16": ctypes.c_uint16,
    "u32": ctypes.c_uint32,
    "u64": ctypes.c_uint64,
    "s8": ctypes.c_int8,
    "s16": ctypes.c_int16,
    "s32": ctypes.c_int32,
    "s64": ctypes.c_int64,
    "int": ctypes.c_int32,
    "char": ctypes.c_char,
}


class AbiError(Exception):
    """bpf/sigtop.h holds something this reader does not understand (a sigtop bug: fix the header)."""


@dataclass
class Abi:
    constants: dict[str, int] = field(default_factory=dict)
    enums: dict[str, dict[str, int]] = field(default_factory=dict)  # enum name -> {MEMBER: value}, in order
    structs: dict[str, type[ctypes.Structure]] = field(default_factory=dict)

    def members(self, enum: str, prefix: str) -> dict[str, int]:
        """An enum's members as Python names: SC_RT_SIGQUEUEINFO -> rt_sigqueueinfo."""
        return {name.removeprefix(prefix).lower(): value for name, value in self.enums[enum].items()}

    def struct(self, name: str) -> type[ctypes.Structure]:
        return self.structs[name]


def header_text() -> str:
    return resources.files("sigtop.bpf").joinpath(HEADER).read_text()


@cache
def kernel_abi() -> Abi:
    """The ABI of the sigtop.h installed with this package (read once)."""
    return parse(header_text())


def _strip(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _integer(text: str, constants: dict[str, int]) -> int:
    """An integer constant expression: literals (with U/L suffixes), known names, + - * / << >> ( )."""
    cleaned = re.sub(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", text.strip())
    try:
        tree = ast.parse(cleaned, mode="eval").body
    except SyntaxError:
        raise AbiError(f"not an integer expression: {text!r}") from None

    def value(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Name) and node.id in constants:
            return constants[node.id]
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp):
            ops = {
                ast.Add: int.__add__,
                ast.Sub: int.__sub__,
                ast.Mult: int.__mul__,
                ast.FloorDiv: int.__floordiv__,
                ast.Div: int.__floordiv__,
                ast.LShift: int.__lshift__,
                ast.RShift: int.__rshift__,
                ast.BitOr: int.__or__,
            }
            op = ops.get(type(node.op))
            if op is not None:
                return op(value(node.left), value(node.right))
        raise AbiError(f"not an integer expression: {text!r}")

    return value(tree)


def _fields(body: str, abi: Abi, where: str) -> list[tuple[str, type]]:
    """The ctypes fields of a struct or union body."""
    out: list[tuple[str, type]] = []
    # A union of structs, named: `union { struct a x; struct b y; } name;`
    for match in re.finditer(r"union\s*\{([^{}]*)\}\s*(\w+)\s*;", body):
        members = _fields(match.group(1), abi, f"{where}.{match.group(2)}")
        union = type(f"{where}_{match.group(2)}", (ctypes.Union,), {"_fields_": members})
        out.append((match.group(2), union))
        body = body.replace(match.group(0), f" __union__ {match.group(2)};", 1)
    unions = dict(out)
    out = []
    for raw in body.split(";"):
        decl = raw.strip()
        if not decl:
            continue
        m = re.fullmatch(r"(struct\s+\w+|\w+)\s+(.+)", decl, flags=re.S)
        if m is None:
            raise AbiError(f"{where}: cannot read the field {decl!r}")
        type_name, declarators = m.group(1), m.group(2)
        for declarator in declarators.split(","):
            d = re.fullmatch(r"\s*(\w+)\s*(?:\[([^\]]+)\])?\s*", declarator)
            if d is None:
                raise AbiError(f"{where}: cannot read the field {decl!r}")
            name, count = d.group(1), d.group(2)
            if type_name == "__union__":
                ctype: type = unions[name]
            elif type_name.startswith("struct"):
                inner = type_name.split()[1]
                if inner not in abi.structs:
                    raise AbiError(f"{where}.{name}: struct {inner} is not defined before it")
                ctype = abi.structs[inner]
            elif type_name in _SCALARS:
                ctype = _SCALARS[type_name]
            else:
                raise AbiError(f"{where}.{name}: type {type_name} is not one of {sorted(_SCALARS)}")
            if count is not None:
                ctype = ctype * _integer(count, abi.constants)
            out.append((name, ctype))
    return out


def parse(text: str) -> Abi:
    """Read a header of the subset described above."""
    abi = Abi()
    lines = []
    for line in _strip(text).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            m = re.fullmatch(r"#\s*define\s+(\w+)\s+(.+)", stripped)
            if m is not None:
                try:
                    abi.constants[m.group(1)] = _integer(m.group(2), abi.constants)
                except AbiError:
                    pass  # a define that is not a number (there are none today): not part of the shared values
            continue
        lines.append(line)
    body = "\n".join(lines)
    pos = 0
    pattern = re.compile(r"\b(enum|struct)\s+(\w+)\s*\{")
    while (m := pattern.search(body, pos)) is not None:
        kind, name = m.group(1), m.group(2)
        depth, end = 1, m.end()
        while depth:
            if end >= len(body):
                raise AbiError(f"{kind} {name}: no closing brace")
            depth += {"{": 1, "}": -1}.get(body[end], 0)
            end += 1
        inner = body[m.end() : end - 1]
        if not body[end:].lstrip().startswith(";"):
            raise AbiError(f"{kind} {name}: no ';' after its closing brace")
        pos = end
        if kind == "enum":
            members: dict[str, int] = {}
            following = 0
            for item in filter(None, (part.strip() for part in inner.split(","))):
                ident, _, value = (part.strip() for part in item.partition("="))
                following = _integer(value, {**abi.constants, **members}) if value else following
                members[ident] = following
                following += 1
            abi.enums[name] = members
        else:
            abi.structs[name] = type(name, (ctypes.Structure,), {"_fields_": _fields(inner, abi, name)})
    return abi


def field_layout(ctype: type) -> list[tuple[str, int, int]]:
    """(path, offset, size) of every leaf field, nested structs and unions flattened as a.b.c."""
    out: list[tuple[str, int, int]] = []

    def walk(t: type, prefix: str, base: int) -> None:
        for name, ftype in t._fields_:
            desc = getattr(t, name)
            path = f"{prefix}{name}"
            if isinstance(ftype, type) and issubclass(ftype, ctypes.Structure | ctypes.Union):
                walk(ftype, path + ".", base + desc.offset)
            else:
                out.append((path, base + desc.offset, desc.size))

    walk(ctype, "", 0)
    return out
