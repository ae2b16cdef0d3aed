"""What the user asked to see: pids, comm substrings, signals.

`pid:1234 sig:TERM comm:nginx ctr:docker`, or bare words: a number is a pid,
a signal name is a signal, anything else a comm substring. `ctr:` matches
either end's container or service label (docker:4f2a..., k8s:..., svc:nginx). Terms of one kind match
any of their values; kinds combine with AND.
"""

from __future__ import annotations

from dataclasses import dataclass

from sigtop.names import UnknownSignalError, parse_signal, signame


class FilterError(ValueError):
    """Why a filter text is not valid, in one line."""


@dataclass(frozen=True)
class FlowFilter:
    pids: frozenset[int] = frozenset()
    comms: tuple[str, ...] = ()
    signals: frozenset[int] = frozenset()
    containers: tuple[str, ...] = ()  # substrings of either end's container label (docker:4f2a, svc:nginx)

    @classmethod
    def parse(cls, text: str) -> FlowFilter:
        pids: set[int] = set()
        comms: list[str] = []
        signals: set[int] = set()
        containers: list[str] = []
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
            elif not kind:
                try:
                    signals.add(parse_signal(value))
                except UnknownSignalError:
                    comms.append(value)
            else:
                raise FilterError(f"unknown filter {kind!r}: use pid:, comm:, sig: or ctr:")
        return cls(frozenset(pids), tuple(comms), frozenset(signals), tuple(containers))

    def __bool__(self) -> bool:
        return bool(self.pids or self.comms or self.signals or self.containers)

    def describe(self) -> str:
        parts = [f"pid:{p}" for p in sorted(self.pids)]
        parts += [f"comm:{c}" for c in self.comms]
        parts += [f"sig:{signame(s)}" for s in sorted(self.signals)]
        parts += [f"ctr:{c}" for c in self.containers]
        return " ".join(parts)

    def _comm_ok(self, *comms: str) -> bool:
        return not self.comms or any(c in comm for c in self.comms for comm in comms)

    def matches_flow(self, row: object) -> bool:
        key = row.key  # type: ignore[attr-defined]
        if self.pids and key.sender_pid not in self.pids and key.target_pid not in self.pids:
            return False
        if self.signals and key.sig not in self.signals:
            return False
        if not self._container_ok(row.sender_container, row.target_container):  # type: ignore[attr-defined]
            return False
        return self._comm_ok(row.sender_comm, row.target_comm)  # type: ignore[attr-defined]

    def _container_ok(self, *labels: str) -> bool:
        return not self.containers or any(c in label for c in self.containers for label in labels)

    def matches_pid_comm(self, pid: int, comm: str, container: str = "") -> bool:
        if self.pids and pid not in self.pids:
            return False
        return self._container_ok(container) and self._comm_ok(comm)
