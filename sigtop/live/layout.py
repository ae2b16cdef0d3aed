"""The compiled program's struct layouts held against the header's (sigtop.abi), at every attach.

Python decodes every record from sigtop.h's declarations; BCC compiled the
same declarations for the kernel. If the two ever disagree (a compiler that
lays a struct out otherwise, a header edited without the reader), attaching
fails with the first field that differs, instead of decoding garbage.
"""

from __future__ import annotations

from sigtop.abi import field_layout, kernel_abi
from sigtop.live.preflight import CollectorError


def check_layout(compiled: type, name: str) -> None:
    """Raise CollectorError unless BCC's ctypes class of struct `name` has the header's layout."""
    ours = field_layout(kernel_abi().struct(name))
    theirs = field_layout(compiled)
    if ours == theirs:
        return
    for a, b in zip(ours, theirs, strict=False):
        if a != b:
            raise CollectorError(f"struct {name}: the header says {a}, the compiled program {b}: a sigtop bug")
    raise CollectorError(f"struct {name}: {len(ours)} fields in the header, {len(theirs)} compiled: a sigtop bug")
