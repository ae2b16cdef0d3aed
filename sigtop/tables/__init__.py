"""The tables, one module each, and their registry: the app's tabs and keys, the report's JSON and
plain tables, and the detail screens are all built from TABLES, in this order."""

from __future__ import annotations

from sigtop.tables import alerts, deaths, flows, signalfd, sigreturn
from sigtop.tables.base import TableSpec

TABLES: dict[str, TableSpec] = {
    spec.name: spec for spec in (flows.SPEC, signalfd.SPEC, sigreturn.SPEC, deaths.SPEC, alerts.SPEC)
}
