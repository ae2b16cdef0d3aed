"""What the user asked to see: pids, comm substrings, signals.

`pid:1234 sig:TERM comm:nginx ctr:docker`, or bare words: a number is a pid,
a signal name is a signal, anything else a comm substring. `ctr:` matches
either end's container or service label (docker:4f2a..., k8s:..., svc:nginx). `is:` picks flows
by what happened (STATES: is:failed, is:fatal, is:noeffect); the other tables have no such
state and are not narrowed by it. Terms of one kind match any of their values; kinds combine
with AND.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sigtop.names import UnknownSignalError, parse_signal, signame


class FilterError(ValueError):
    """Why a filter text is not valid, in one line."""


# What `is:` can ask of a flow (sigtop.tables.flows.in_state says what each means).
STATES = {
    "failed": "the send failed (an errno)",
    "fatal": "a signal whose default action ends the process",
    "noeffect": "signals that did not (all) take effect: ignored, merged, lost, failed, pending, discarded, suppressed",
}


@dataclass(frozen=True)
class FlowFilter:
    pids: frozenset[int] = frozenset()
    comms: tuple[str, ...] = ()
    signals: frozenset[int] = frozenset()
    containers: tuple[str, ...] = ()  # substrings of either end's container label (docker:4f2a, svc:nginx)
    states: frozenset[str] = frozenset()  # is:failed, is:fatal, is:noeffect (flows only)

    @classmethod
    def parse(cls, text: str) -> FlowFilter:
        pids: set[int] = set()
        comms: list[str] = []
        signals: set[int] = set()
        containers: list[str] = []
        states: set[str] = set()
        for word in text.split():
            kind, sep, value = word.partition(":")
            if not sep:
                kind, value = "", word
            kind = kind.lower()
            if not value:
                raise FilterError(f"{word!r}: nothing after the colon")
            if kind in ("pid", "p") or (not kind and value.isdigit()):
                if not value.isdigit() or int(value) <= 0:
                    raise FilterError(f"{value!r} is not a pid (a positive number)")
                pids.add(int(value))
            elif kind in ("sig", "signal", "s"):
                try:
                    signals.add(parse_signal(value))
                except UnknownSignalError as exc:
                    raise FilterError(str(exc)) from None
            elif kind in ("comm", "c"):
                comms.append(value)
            elif kind in ("ctr", "container"):
                containers.append(value)
            elif kind == "is":
                if value.lower() not in STATES:
                    raise FilterError(f"is:{value}: use {', '.join('is:' + s for s in STATES)}")
                states.add(value.lower())
            elif not kind:
                try:
                    signals.add(parse_signal(value))
                except UnknownSignalError:
                    comms.append(value)
            else:
                raise FilterError(f"unknown filter {kind!r}: use pid:, comm:, sig:, ctr: or is:")
        return cls(frozenset(pids), tuple(comms), frozenset(signals), tuple(containers), frozenset(states))

    def __bool__(self) -> bool:
        return bool(self.pids or self.comms or self.signals or self.containers or self.states)

    def describe(self) -> str:
        parts = [f"pid:{p}" for p in sorted(self.pids)]
        parts += [f"comm:{c}" for c in self.comms]
        parts += [f"sig:{signame(s)}" for s in sorted(self.signals)]
        parts += [f"ctr:{c}" for c in self.containers]
        parts += [f"is:{s}" for s in sorted(self.states)]
        return " ".join(parts)

    def matches(
        self,
        pids: Iterable[int],
        comms: Iterable[str],
        signals: int | Iterable[int] | None,
        containers: Iterable[str],
    ) -> bool:
        """The one test every table's rows take: any of the row's pids, any of its names, its
        signal (or any of them; None: a row of no signal passes a signal filter), any of its
        containers' labels. Terms of one kind match any of their values; kinds combine with AND."""
        if self.pids and not any(p in self.pids for p in pids):
            return False
        if self.signals and signals is not None:
            wanted = (signals,) if isinstance(signals, int) else signals
            if not any(s in self.signals for s in wanted):
                return False
        if self.containers and not any(c in label for c in self.containers for label in containers):
            return False
        return not self.comms or any(c in comm for c in self.comms for comm in comms)
