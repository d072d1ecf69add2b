"""Reproducible audit samples: drawn by seed, recorded, checked by anyone.

An auditor tests a control on a sample of its population — changes of the quarter,
leavers of the year, findings of a check. The sample must be random, and the draw must
be repeatable by someone who does not trust the tool: so the selection is defined
without any random-number generator —

    rank(item) = SHA-256("<seed>\\n<item id>")    (hex, compared as text)
    sample     = the ``size`` items of smallest rank

— which anyone can recompute with ``sha256sum`` from the population file and the seed.
The same seed gives the same items; another seed, other items; the auditor may bring
the seed. Each draw is recorded in the store as signed evidence (source ``@samples``):
the population's definition, its as-of instant, its size and digest
(SHA-256 over the sorted item ids, one per line), the seed and the items drawn.
Packages carry every sample drawn for their period with its population, and
``verify-package`` recomputes both the digest and the draw.

Automatic sizes follow the table audit firms commonly use for tests of controls by
how often the control operates (see :data:`AUTO_SIZES`); a population smaller than the
size is taken whole.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from core.records import Evidence, utcnow
from core.signing import Signer
from store.schema import blobs, evidence, sealed
from store.writer import RunSummary, record_run

SAMPLES_SOURCE = "@samples"
SAMPLE_TYPE = "sample.draws.record"

#: Sample size by how often the control operates (tests of controls: annual 1,
#: quarterly 2, monthly 2, weekly 5, daily 20, several times a day 25), as commonly
#: tabulated from the AICPA Audit Guide "Audit Sampling" for a low expected deviation.
AUTO_SIZES: dict[str, int] = {
    "annual": 1,
    "quarterly": 2,
    "monthly": 2,
    "weekly": 5,
    "daily": 20,
    "recurring": 25,
}


class SampleError(ValueError):
    """A sample that cannot be drawn as asked (the CLI exits 2)."""


def auto_size(frequency: str, population: int) -> int:
    if frequency not in AUTO_SIZES:
        raise SampleError(f"unknown frequency {frequency!r} (one of {', '.join(AUTO_SIZES)})")
    return min(AUTO_SIZES[frequency], population)


def population_digest(ids: Iterable[str]) -> str:
    """SHA-256 over the sorted item ids, one per line (each line ending in a newline)."""
    h = hashlib.sha256()
    for i in sorted(ids):
        h.update(i.encode("utf-8") + b"\n")
    return h.hexdigest()


def rank(seed: str, item_id: str) -> str:
    return hashlib.sha256(f"{seed}\n{item_id}".encode()).hexdigest()


def draw(ids: Sequence[str], seed: str, size: int) -> list[str]:
    """The ``size`` ids of smallest rank under ``seed`` (all of them if fewer)."""
    if size < 0:
        raise SampleError("the sample size cannot be negative")
    if len(set(ids)) != len(ids):
        raise SampleError("the population has duplicate item ids")
    return sorted(ids, key=lambda i: rank(seed, i))[:size]


def new_seed() -> str:
    return secrets.token_hex(8)


@dataclass
class Sample:
    """One recorded draw."""

    population: dict[str, Any]  # kind, filters, period, as_of: what was sampled
    population_size: int
    population_digest: str
    seed: str
    size: int
    items: list[str]
    drawn_by: str
    drawn_at: datetime | None = None
    id: str = ""
    run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {
            "population": self.population,
            "population_size": self.population_size,
            "population_digest": self.population_digest,
            "seed": self.seed,
            "size": self.size,
            "items": self.items,
            "drawn_by": self.drawn_by,
            "method": "sha256(seed + newline + item id), smallest first",
        }

    @classmethod
    def from_payload(cls, sid: str, p: Mapping[str, Any], at: datetime, run_id: str) -> Sample:
        return cls(
            population=dict(p["population"]),
            population_size=int(p["population_size"]),
            population_digest=str(p["population_digest"]),
            seed=str(p["seed"]),
            size=int(p["size"]),
            items=list(p["items"]),
            drawn_by=str(p["drawn_by"]),
            drawn_at=at,
            id=sid,
            run_id=run_id,
        )


def make_sample(
    population: Mapping[str, Any],
    ids: Sequence[str],
    *,
    seed: str | None,
    size: int,
    drawn_by: str,
) -> Sample:
    seed = seed or new_seed()
    items = draw(ids, seed, size)
    digest = population_digest(ids)
    sid = hashlib.sha256(f"{digest}\n{seed}\n{size}".encode()).hexdigest()[:16]
    return Sample(
        population=dict(population),
        population_size=len(ids),
        population_digest=digest,
        seed=seed,
        size=size,
        items=items,
        drawn_by=drawn_by,
        id=sid,
    )


def record_sample(
    engine: Engine,
    sample: Sample,
    *,
    signer: Signer | None,
    config_digest: str,
    mapping_digest: str,
    agent_version: str,
) -> RunSummary:
    """Record ``sample`` as one signed ``@samples`` run (drawing again adds nothing)."""
    # No coverage reported: a sample once recorded is never closed by a later draw.
    record = Evidence("samples", "global", SAMPLE_TYPE, sample.id, sample.payload())
    return record_run(
        engine, [record], source=SAMPLES_SOURCE, connector_type="samples", signer=signer,
        config_digest=config_digest, mapping_digest=mapping_digest, agent_version=agent_version,
    )


def recorded_samples(conn: Connection, at: datetime | None = None) -> list[Sample]:
    """Every sample recorded up to ``at`` (default: now), oldest first."""
    at = at or utcnow()
    q = (
        select(evidence.c.resource_id, evidence.c.collected_at, evidence.c.run_id, blobs.c.body)
        .select_from(evidence.join(blobs, blobs.c.hash == evidence.c.content_hash))
        .where(
            evidence.c.source == SAMPLES_SOURCE,
            evidence.c.resource_type == SAMPLE_TYPE,
            evidence.c.collected_at <= at,
            sealed(evidence),
        )
        .order_by(evidence.c.collected_at, evidence.c.id)
    )
    seen: dict[str, Sample] = {}
    for sid, when, run_id, body in conn.execute(q):
        seen.setdefault(sid, Sample.from_payload(sid, json.loads(body), when, run_id))
    return list(seen.values())


# -- populations to sample ----------------------------------------------------------------

POPULATION_KINDS = ("process", "findings", "evidence")


def _stamp(t: Any) -> str:
    if isinstance(t, datetime):
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return "" if t is None else str(t)


def population_rows(conn: Connection, spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The population ``spec`` names, each row with its ``item_id``, in a stable order.

    ``spec``: ``{"kind": "process", "process": "change", "period": "2026-Q1",
    "source": …, "by": …, "as_of": …}``, ``{"kind": "findings", "period": …,
    "check": …, "control": …, "status": …, "source": …}`` or ``{"kind": "evidence",
    "period": …, "resource_type": …, "source": …}``. Reading the same spec again
    gives the same rows: process populations are read as recorded at ``as_of``,
    finding and evidence populations are versions in force during the period.
    """
    from store.populations import parse_period, population
    from store.queries import evidence_in_period, findings_in_period

    kind = spec.get("kind")
    period = parse_period(str(spec["period"]))
    start = datetime(
        period.start.year, period.start.month, period.start.day, tzinfo=period.end_instant.tzinfo
    )
    if kind == "process":
        at = datetime.fromisoformat(spec["as_of"]) if spec.get("as_of") else None
        rows = population(
            conn, str(spec["process"]), period, at=at, source=spec.get("source"), by=spec.get("by")
        ).rows
        for r in rows:
            r["item_id"] = f"{r['source']}|{r['key']}"
        return rows
    if kind == "findings":
        rows = findings_in_period(
            conn,
            start,
            period.end_instant,
            check_id=spec.get("check"),
            source=spec.get("source"),
            status=spec.get("status"),
        )
        if spec.get("control"):
            rows = [r for r in rows if spec["control"] in r["controls"]]
        return _version_ids(rows)
    if kind == "evidence":
        return _version_ids(
            evidence_in_period(
                conn,
                start,
                period.end_instant,
                source=spec.get("source"),
                resource_type=spec.get("resource_type"),
            )
        )
    raise SampleError(f"unknown population kind {kind!r} (one of {', '.join(POPULATION_KINDS)})")


def _version_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (versions in force during a period), each given its ``item_id``: the item
    and the instant that version took effect."""
    for r in rows:
        r["item_id"] = f"{r['source']}|{r['key']}|{_stamp(r['valid_from'])}"
    return rows
