"""Risks as declared: the risks file (TOML or CSV) and risk tickets, into :class:`Risk`.

A risk file lists one risk per ``[[risk]]`` table (TOML) or row (CSV, same column names;
list columns separated by ``;``)::

    [[risk]]
    id = "R-001"
    title = "Customer data exposed through a lost laptop"
    asset = "Laptops holding customer data"      # asset or scope
    threat = "Theft or loss"
    vulnerability = "Unencrypted disks"
    owner = "CTO"
    likelihood = 3                               # level 1..n, or its label ("Possible")
    impact = "Major"
    treatment = "modify"                         # modify | retain | avoid | share
    controls = ["A.8.1", "A.8.24"]               # treating Annex A controls
    additional_controls = ["MDM remote wipe"]    # controls outside Annex A (listed, not judged)
    residual_likelihood = 1                      # target residual: both levels, …
    residual_impact = 4
    # residual_score = 4                         # … or the score; neither: the inherent score
    review_date = 2026-12-31                     # next review due
    accepted_by = "CEO"                          # acceptance: both or neither
    accepted_on = 2026-03-01

Scales and appetite come from ``[audit.risk]``. Validation is strict and names the entry
and the reason, like the exceptions file: a risk register that silently dropped a risk
would report less risk than there is.
"""

from __future__ import annotations

import csv
import io
import re
import tomllib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

TREATMENTS = ("modify", "retain", "avoid", "share")
#: The default scales (``[audit.risk]`` without likelihood / impact).
DEFAULT_LIKELIHOOD = ("Rare", "Unlikely", "Possible", "Likely", "Almost certain")
DEFAULT_IMPACT = ("Negligible", "Minor", "Moderate", "Major", "Severe")
#: ISO/IEC 27005 names the options as nouns; both spellings are accepted.
_TREATMENT_ALIASES = {
    "modification": "modify",
    "mitigate": "modify",
    "reduce": "modify",
    "retention": "retain",
    "accept": "retain",
    "avoidance": "avoid",
    "sharing": "share",
    "transfer": "share",
}
_ANNEX_A = re.compile(r"A\.\d+\.\d+")
_KEYS = (
    "id",
    "title",
    "asset",
    "threat",
    "vulnerability",
    "owner",
    "likelihood",
    "impact",
    "treatment",
    "controls",
    "additional_controls",
    "residual_likelihood",
    "residual_impact",
    "residual_score",
    "review_date",
    "accepted_by",
    "accepted_on",
)
_REQUIRED = ("id", "title", "owner", "likelihood", "impact", "treatment")


class RiskFileError(ValueError):
    """A risks file (or a risk ticket) that does not validate; says where and why."""


@dataclass(frozen=True)
class Scales:
    """Likelihood and impact levels, lowest first; a level is its 1-based position."""

    likelihood: tuple[str, ...]
    impact: tuple[str, ...]

    def level(self, axis: str, value: Any) -> int:
        labels = self.likelihood if axis.endswith("likelihood") else self.impact
        if isinstance(value, bool):
            raise RiskFileError(f"{axis}: {value!r} is not a level")
        n = whole(value)
        if n is not None:
            if 1 <= n <= len(labels):
                return n
            raise RiskFileError(f"{axis}: {n} is outside the scale 1..{len(labels)}")
        if isinstance(value, str):
            folded = [s.casefold() for s in labels]
            if value.strip().casefold() in folded:
                return folded.index(value.strip().casefold()) + 1
        raise RiskFileError(
            f"{axis}: {value!r} is neither a level 1..{len(labels)} nor one of {', '.join(labels)}"
        )

    def as_dict(self) -> dict[str, list[str]]:
        return {"likelihood": list(self.likelihood), "impact": list(self.impact)}


@dataclass(frozen=True)
class RiskPolicy:
    """What the organisation tolerates: the appetite (highest residual score accepted
    without the owner's acceptance; None: only the lowest score, 1) and the scales."""

    appetite: int | None
    scales: Scales

    @property
    def threshold(self) -> int:
        return 1 if self.appetite is None else self.appetite

    def payload(self) -> dict[str, Any]:
        return {"appetite": self.appetite, **self.scales.as_dict()}

    @classmethod
    def from_payload(cls, p: Mapping[str, Any]) -> RiskPolicy:
        return cls(p.get("appetite"), Scales(tuple(p["likelihood"]), tuple(p["impact"])))

    @classmethod
    def default(cls) -> RiskPolicy:
        """No appetite, the default scales: what answers when nothing is configured."""
        return cls(None, Scales(DEFAULT_LIKELIHOOD, DEFAULT_IMPACT))


@dataclass(frozen=True)
class Risk:
    """One risk as declared (levels already on the scales)."""

    id: str
    title: str
    owner: str
    likelihood: int
    impact: int
    treatment: str
    asset: str = ""
    threat: str = ""
    vulnerability: str = ""
    controls: tuple[str, ...] = ()
    additional_controls: tuple[str, ...] = ()
    residual_score: int | None = None
    review_date: date | None = None
    accepted_by: str | None = None
    accepted_on: datetime | None = None
    source: str = "file"
    url: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def inherent_score(self) -> int:
        return self.likelihood * self.impact

    @property
    def target_residual(self) -> int:
        """The residual score the treatment aims at (the inherent one if none declared)."""
        return self.inherent_score if self.residual_score is None else self.residual_score

    def payload(self) -> dict[str, Any]:
        """The recorded form (canonical: no derived values that scales could change)."""
        return {
            "id": self.id,
            "title": self.title,
            "owner": self.owner,
            "asset": self.asset,
            "threat": self.threat,
            "vulnerability": self.vulnerability,
            "likelihood": self.likelihood,
            "impact": self.impact,
            "treatment": self.treatment,
            "controls": list(self.controls),
            "additional_controls": list(self.additional_controls),
            "residual_score": self.residual_score,
            "review_date": self.review_date.isoformat() if self.review_date else None,
            "accepted_by": self.accepted_by,
            "accepted_on": _iso(self.accepted_on),
            "source": self.source,
            "url": self.url,
        }

    @classmethod
    def from_payload(cls, p: Mapping[str, Any]) -> Risk:
        return cls(
            id=p["id"],
            title=p["title"],
            owner=p["owner"],
            asset=p.get("asset") or "",
            threat=p.get("threat") or "",
            vulnerability=p.get("vulnerability") or "",
            likelihood=int(p["likelihood"]),
            impact=int(p["impact"]),
            treatment=p["treatment"],
            controls=tuple(p.get("controls") or ()),
            additional_controls=tuple(p.get("additional_controls") or ()),
            residual_score=p.get("residual_score"),
            review_date=date.fromisoformat(p["review_date"]) if p.get("review_date") else None,
            accepted_by=p.get("accepted_by"),
            accepted_on=_parse(p.get("accepted_on")),
            source=p.get("source") or "file",
            url=p.get("url"),
        )


def whole(value: Any) -> int | None:
    """A whole number from ``3``, ``"3"``, ``3.0`` or ``"3.0"`` (ticket number fields come
    back as floats); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        f = float(value) if isinstance(value, float | str) else None
    except ValueError:
        return None
    return int(f) if f is not None and f.is_integer() else None


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(v: str | None) -> datetime | None:
    return None if not v else datetime.fromisoformat(v.replace("Z", "+00:00"))


def _day(value: Any, key: str) -> date:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return _day(datetime.fromisoformat(value.strip().replace("Z", "+00:00")), key)
        except ValueError:
            pass
    raise RiskFileError(f"{key}: {value!r} is not a date (YYYY-MM-DD)")


def _instant(value: Any, key: str) -> datetime:
    """A date is its start (UTC); a naive date-time is UTC."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC)
    if isinstance(value, str) and value.strip():
        text = value.strip().replace("Z", "+00:00")
        try:
            return _instant(datetime.fromisoformat(text), key)
        except ValueError:
            pass
    raise RiskFileError(f"{key}: {value!r} is not a date or date-time")


def _text(item: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    v = item.get(key)
    if v is None or (isinstance(v, str) and not v.strip()):
        if required:
            raise RiskFileError(f"missing or empty {key!r}")
        return ""
    if not isinstance(v, str | int):
        raise RiskFileError(f"{key!r} must be text")
    return str(v).strip()


def _list(value: Any, key: str, *, split: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [s.strip() for s in re.split(split, value) if s.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    raise RiskFileError(f"{key!r} must be a list of text")


def build_risk(
    item: Mapping[str, Any],
    scales: Scales,
    catalog: Collection[str],
    *,
    source: str = "file",
    url: str | None = None,
) -> Risk:
    """One risk from its declared fields (a TOML table, a CSV row or a ticket's fields)."""
    for key in item:
        if key not in _KEYS:
            raise RiskFileError(f"unknown key {key!r} (allowed: {', '.join(_KEYS)})")
    for key in _REQUIRED:
        _text(item, key, required=True)
    treatment = _text(item, "treatment").casefold()
    treatment = _TREATMENT_ALIASES.get(treatment, treatment)
    if treatment not in TREATMENTS:
        raise RiskFileError(
            f"treatment {item['treatment']!r} is not one of {', '.join(TREATMENTS)}"
        )
    controls: list[str] = []
    for piece in _list(item.get("controls"), "controls", split=r"[;,]"):
        words = piece.split()
        # "A.8.1 A.8.24" is two ids; "MFA app" is one additional control.
        controls += words if all(_ANNEX_A.fullmatch(w) for w in words) else [piece]
    additional = _list(item.get("additional_controls"), "additional_controls", split=r";")
    annex = [c for c in controls if _ANNEX_A.fullmatch(c)]
    # Free text in the controls of a ticket (or a file) is an additional control; an
    # Annex A id that is not in the catalog is a typo, never silently dropped.
    unknown = [c for c in annex if c not in catalog]
    if unknown:
        raise RiskFileError(f"unknown Annex A control(s) {', '.join(unknown)}")
    additional += [c for c in controls if not _ANNEX_A.fullmatch(c)]
    residual: int | None = None
    has_rl, has_ri = item.get("residual_likelihood"), item.get("residual_impact")
    if has_rl not in (None, "") or has_ri not in (None, ""):
        if has_rl in (None, "") or has_ri in (None, ""):
            raise RiskFileError("give both residual_likelihood and residual_impact")
        residual = scales.level("residual_likelihood", has_rl) * scales.level(
            "residual_impact", has_ri
        )
        if item.get("residual_score") not in (None, ""):
            raise RiskFileError("give residual_score or the residual levels, not both")
    elif item.get("residual_score") not in (None, ""):
        raw = item["residual_score"]
        residual = whole(raw)
        if residual is None:
            raise RiskFileError(f"residual_score: {raw!r} is not a whole number")
        top = len(scales.likelihood) * len(scales.impact)
        if not 1 <= residual <= top:
            raise RiskFileError(f"residual_score: {residual} is outside 1..{top}")
    likelihood = scales.level("likelihood", item["likelihood"])
    impact = scales.level("impact", item["impact"])
    if residual is not None and residual > likelihood * impact:
        raise RiskFileError(
            f"the target residual score {residual} exceeds the inherent score {likelihood * impact}"
        )
    by, on = _text(item, "accepted_by"), item.get("accepted_on")
    if bool(by) != (on not in (None, "")):
        raise RiskFileError("an acceptance needs both accepted_by and accepted_on")
    review = item.get("review_date")
    return Risk(
        id=_text(item, "id"),
        title=_text(item, "title"),
        owner=_text(item, "owner"),
        asset=_text(item, "asset"),
        threat=_text(item, "threat"),
        vulnerability=_text(item, "vulnerability"),
        likelihood=likelihood,
        impact=impact,
        treatment=treatment,
        controls=tuple(sorted(set(annex), key=_control_key)),
        additional_controls=tuple(dict.fromkeys(additional)),
        residual_score=residual,
        review_date=None if review in (None, "") else _day(review, "review_date"),
        accepted_by=by or None,
        accepted_on=None if not by else _instant(on, "accepted_on"),
        source=source,
        url=url,
    )


def _control_key(cid: str) -> tuple[int, ...]:
    return tuple(int(p) for p in cid[2:].split("."))


def load_risk_file(path: Path, scales: Scales, catalog: Collection[str]) -> list[Risk]:
    """Every risk of a ``.toml`` or ``.csv`` file, validated; RiskFileError otherwise."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RiskFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RiskFileError(f"{path}: not UTF-8") from None
    items: Sequence[Mapping[str, Any]]
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None:
            return []
        unknown = [c for c in reader.fieldnames if c not in _KEYS]
        if unknown:
            raise RiskFileError(f"{path}: unknown column(s) {', '.join(unknown)}")
        items = [{k: v for k, v in row.items() if v not in (None, "")} for row in reader]
        label = "row {n}"
        first = 2  # the header is line 1
    else:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RiskFileError(f"{path}: invalid TOML: {exc}") from None
        extra = [k for k in doc if k != "risk"]
        if extra:
            raise RiskFileError(f"{path}: unknown top-level key(s) {', '.join(extra)}")
        raw = doc.get("risk", [])
        if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
            raise RiskFileError(f"{path}: risks must be [[risk]] tables")
        items = raw
        label = "risk[{n}]"
        first = 1
    out: list[Risk] = []
    seen: set[str] = set()
    for n, item in enumerate(items, start=first):
        where = label.format(n=n) + (f" ({item['id']})" if item.get("id") else "")
        try:
            risk = build_risk(item, scales, catalog)
        except RiskFileError as exc:
            raise RiskFileError(f"{path}: {where}: {exc}") from None
        if risk.id in seen:
            raise RiskFileError(f"{path}: {where}: duplicate risk id {risk.id}")
        seen.add(risk.id)
        out.append(risk)
    return out


def risk_from_ticket(
    payload: Mapping[str, Any], scales: Scales, catalog: Collection[str], source: str
) -> Risk:
    """A risk from a ``<prefix>.risk.ticket`` evidence payload (connectors/process.py).

    The acceptance is the first entry into an ``approved_states`` state (who and when,
    from the ticket's history); without one, the ``accepted_by``/``accepted_on`` fields
    if the process maps them. The owner defaults to the assignee.
    """
    ticket = payload.get("ticket") or {}
    fields = dict(ticket.get("risk") or {})
    derived = payload.get("derived") or {}
    item: dict[str, Any] = {k: v for k, v in fields.items() if v not in (None, "")}
    item["id"] = str(ticket.get("key") or "")
    item["title"] = ticket.get("title") or item["id"]
    if not item.get("owner"):
        assignee = ticket.get("assignee") or {}
        item["owner"] = assignee.get("name") or assignee.get("id") or ""
    if derived.get("approved_at"):
        approvers = derived.get("approved_by") or []
        item["accepted_by"] = ", ".join(p.get("name") or p["id"] for p in approvers) or (
            "unknown approver"
        )
        item["accepted_on"] = derived["approved_at"]
    return build_risk(item, scales, catalog, source=source, url=ticket.get("url"))
