"""Property: whatever a recording holds, replay either reads it or says, on one line, which line is bad.

A fuzzer once found 39 places where a crafted value crashed replay. Here
hypothesis mutates the real recording (any value anywhere replaced by a
null, a huge or non-finite number, a string of control characters, a list
or an object) and the whole path (read, fold into the model, the JSON, the
batch table) must never raise anything but RecordingError.
"""

from __future__ import annotations

import io
import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from sigtop.export.report import print_tables, to_json
from sigtop.model import SignalModel
from sigtop.recording import RecordingError, read_recording
from tests.conftest import RECORDING

LINES = RECORDING.read_text().splitlines()
HEADER = LINES[0]
# A compact batch holding every kind of record: flows, threads, signalfds, events, procs.
BASE = json.loads(LINES[1])
for line in LINES[2:]:
    doc = json.loads(line)
    for part in ("flows", "threads", "signalfds", "events", "procs"):
        if not BASE[part] and doc[part]:
            BASE[part] = doc[part]
for part in ("flows", "threads", "signalfds", "events", "procs"):
    BASE[part] = BASE[part][:3]

hostile = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.sampled_from(["\x1b]0;x\x07", "[red]x", "1e308", "-1"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += paths(v, (*prefix, i))
    return found


PATHS = paths(BASE)


def replaced(doc: Any, path: tuple, value: Any) -> Any:
    doc = json.loads(json.dumps(doc))
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return doc


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(PATHS), hostile), min_size=1, max_size=4))
def test_any_value_anywhere_is_read_or_refused_on_one_line(tmp_path_factory, mutations):
    doc = BASE
    for path, value in mutations:
        try:
            doc = replaced(doc, path, value)
        except (KeyError, IndexError, TypeError):  # an earlier mutation removed this path
            continue
    path = tmp_path_factory.mktemp("fuzz") / "rec.jsonl"
    path.write_text(HEADER + "\n" + json.dumps(doc) + "\n")
    try:
        _head, batches = read_recording(path)
    except RecordingError as exc:
        message = str(exc)
        assert "\n" not in message
        # the line, and the field at fault (or what about the line is corrupt)
        assert re.match(rf"{re.escape(str(path))}:2: (batch[\w.\[\]]*: |corrupt line|no )", message), message
        return
    model = SignalModel()
    for batch in batches:
        model.apply(batch)
    doc = to_json(model)
    json.dumps(doc, allow_nan=False)  # nothing non-finite reaches the JSON
    assert all(f["count"] >= 0 for f in doc["flows"])
    console = Console(record=True, file=io.StringIO(), width=200)
    print_tables(model, console)
    shown = console.export_text(styles=False) + json.dumps(doc, ensure_ascii=False)
    assert not any(raw in shown for raw in ("\x1b", "\x07", "\x9b")), "an escape reached the output"
