"""The risk register (store/risks.py) on SQLite and PostgreSQL.

The estate is written by the real run engine (``run_connector``) with the scripted fake
connector; the risks file is recorded as decisions by the real ``sync``; the register
is read back through the functions and through the ``annexa risks`` CLI.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from collector.decisions import DecisionFileError, file_decisions, risk_policy, sync
from mappings.loader import MappingIndex
from store.integrity import verify
from store.risk_input import RiskFileError, Scales, load_risk_file
from store.risks import register_at, risks_by_control
from tests.fakes import estate
from tests.test_auditor_cli import annexa
from tests.test_trust import FAILING, collect, documented, index, settings_for, signer

__all__ = ["index", "signer"]

pytestmark = pytest.mark.clock

KNOWN = {"fake.disk.encrypted", "fake.user.mfa"}
SCALES = Scales(("Rare", "Unlikely", "Possible", "Likely", "Almost certain"),
                ("Negligible", "Minor", "Moderate", "Major", "Severe"))
RISK = """
[[risk]]
id = "R-1"
title = "Customer data read from a stolen disk"
asset = "Production volumes"
threat = "Theft of storage media"
vulnerability = "Unencrypted volume"
owner = "CTO"
likelihood = "Likely"
impact = 4
treatment = "modify"
controls = ["A.8.24"]
additional_controls = ["Shredding contract"]
residual_score = 4
review_date = {review}
{acceptance}
"""


def write_risks(path: Path, *, review: date, acceptance: str = "") -> None:
    path.write_text(RISK.format(review=review.isoformat(), acceptance=acceptance))


def settings_with(db_url: str, tmp_path: Path, risks: Path, appetite: int | None = 6):
    settings = settings_for(db_url)
    settings.path = tmp_path / "annexa.toml"
    settings.model.audit.risks_file = risks
    settings.model.audit.risk.appetite = appetite
    return settings


def rows_at(engine: Engine, index: MappingIndex, settings, at: datetime | None = None):
    rows, policy, recorded = register_at(
        engine, index, at or datetime.now(UTC), fallback=risk_policy(settings)
    )
    return {r.id: r for r in rows}, policy, recorded


def test_failing_treatment_is_flagged_and_acceptance_clears_it_only_from_its_recording(
    engine, index, db_url, signer, tmp_path
):
    documented(engine, index, tmp_path, "A.8.24", signer)
    collect(engine, index, FAILING, db_url)  # d1 unencrypted: A.8.24 fails
    risks = tmp_path / "risks.toml"
    review = datetime.now(UTC).date() + timedelta(days=90)
    write_risks(risks, review=review)
    settings = settings_with(db_url, tmp_path, risks)
    assert sync(settings, engine, index, file_decisions(settings, index, KNOWN)) is not None

    rows, policy, recorded = rows_at(engine, index, settings)
    r = rows["R-1"]
    assert recorded and policy.appetite == 6
    assert r.controls == {"A.8.24": "fail"}
    assert r.flags == ["treatment_not_effective", "residual_above_appetite"]
    assert (r.inherent_score, r.target_residual, r.effective_residual) == (16, 4, 16)
    assert r.status == "fail" and not r.accepted
    assert risks_by_control([r])["A.8.24"][0]["risk"] == "R-1"

    before = datetime.now(UTC)
    month_ago = (before - timedelta(days=30)).date().isoformat()
    write_risks(risks, review=review,
                acceptance=f'accepted_by = "CEO"\naccepted_on = {month_ago}')
    summary = sync(settings, engine, index, file_decisions(settings, index, KNOWN))
    # The risk and the file's recorded SHA-256.
    assert summary is not None and summary.counts["evidence_written"] == 2

    # Before the recording — even though accepted_on is a month earlier — still flagged.
    rows, _, _ = rows_at(engine, index, settings, before)
    assert rows["R-1"].flags == ["treatment_not_effective", "residual_above_appetite"]
    assert not rows["R-1"].accepted
    # From the recording on: the flags are accepted, not raised.
    rows, _, _ = rows_at(engine, index, settings)
    r = rows["R-1"]
    assert r.accepted and r.flags == []
    assert r.accepted_flags == ["treatment_not_effective", "residual_above_appetite"]
    assert r.status == "excepted"
    assert r.acceptance_recorded_at is not None and r.acceptance_recorded_at > before
    assert any("counts from its recording" in n for n in r.notes)
    assert verify(engine, trusted_keys={signer.key_id: signer.public}).ok

    # An acceptance dated in the future counts from that date, not from its recording.
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    write_risks(risks, review=review,
                acceptance=f'accepted_by = "CEO"\naccepted_on = {tomorrow.isoformat()}')
    sync(settings, engine, index, file_decisions(settings, index, KNOWN))
    rows, _, _ = rows_at(engine, index, settings)
    assert not rows["R-1"].accepted and rows["R-1"].flags[0] == "treatment_not_effective"
    day_after = datetime.combine(tomorrow, datetime.min.time(), tzinfo=UTC) + timedelta(hours=1)
    rows, _, _ = rows_at(engine, index, settings, day_after)
    assert rows["R-1"].accepted and rows["R-1"].flags == []
    # Back to the recorded acceptance of a month ago for the CLI below.
    write_risks(risks, review=review,
                acceptance=f'accepted_by = "CEO"\naccepted_on = {month_ago}')
    sync(settings, engine, index, file_decisions(settings, index, KNOWN))

    # The same through the CLI, now and --at the instant before the recording.
    cfg = tmp_path / "annexa.toml"
    cfg.write_text(
        f'[database]\nurl = "{db_url}"\n[log]\nformat = "json"\n'
        f'[mappings]\npaths = ["maps"]\n'
        f'[audit]\nrisks_file = "risks.toml"\n[audit.risk]\nappetite = 6\n'
    )
    (tmp_path / "maps").mkdir(exist_ok=True)
    (tmp_path / "maps" / "fake.toml").write_text((Path(index.files[-1])).read_text())
    now = json.loads(annexa("risks", "-c", str(cfg), "-f", "json").stdout)
    then = annexa("risks", "-c", str(cfg), "-f", "json", "--at", before.isoformat())
    assert then.returncode == 0, then.stderr
    (old,) = json.loads(then.stdout)
    assert old["flags"] == ["treatment_not_effective", "residual_above_appetite"]
    assert now[0]["flags"] == [] and now[0]["accepted"] is True
    flagged = annexa("risks", "-c", str(cfg), "--flagged", "-f", "json")
    assert json.loads(flagged.stdout) == []


def test_a_passing_treatment_within_appetite_is_not_flagged_and_reviews_expire(
    engine, index, db_url, signer, tmp_path
):
    documented(engine, index, tmp_path, "A.8.24", signer)
    collect(engine, index, estate({"d1": True}, {"alice": True}), db_url)
    risks = tmp_path / "risks.toml"
    review = datetime.now(UTC).date() + timedelta(days=10)
    write_risks(risks, review=review)
    settings = settings_with(db_url, tmp_path, risks)
    sync(settings, engine, index, file_decisions(settings, index, KNOWN))
    rows, _, _ = rows_at(engine, index, settings)
    r = rows["R-1"]
    assert r.controls == {"A.8.24": "pass"} and r.flags == [] and r.status == "pass"
    assert r.effective_residual == 4
    # Twelve days later, unread since: the control is stale (freshness 7 days), so the
    # treatment is no longer evidenced, and the review date has passed.
    later, _, _ = rows_at(engine, index, settings, datetime.now(UTC) + timedelta(days=12))
    assert later["R-1"].controls == {"A.8.24": "stale"}
    assert later["R-1"].flags == [
        "treatment_not_effective", "residual_above_appetite", "review_overdue"
    ]
    assert later["R-1"].assessment_status == "stale"
    # A lower appetite recorded later flags the residual from then on, not before.
    recorded_before = datetime.now(UTC)
    settings.model.audit.risk.appetite = 3
    sync(settings, engine, index, file_decisions(settings, index, KNOWN))
    rows, policy, _ = rows_at(engine, index, settings)
    assert policy.appetite == 3 and rows["R-1"].flags == ["residual_above_appetite"]
    rows, policy, _ = rows_at(engine, index, settings, recorded_before)
    assert policy.appetite == 6 and rows["R-1"].flags == []
    # Removing the file revokes the risks from the next sync on.
    settings.model.audit.risks_file = None
    settings.model.audit.risk.appetite = None
    sync(settings, engine, index, file_decisions(settings, index, KNOWN))
    rows, _, _ = rows_at(engine, index, settings)
    assert rows == {}


def test_modify_without_annex_a_control_lacks_evidence(
    engine, index, db_url, signer, tmp_path
):
    risks = tmp_path / "risks.csv"
    risks.write_text(
        "id,title,owner,likelihood,impact,treatment,additional_controls,review_date\n"
        "R-9,Vendor outage,COO,2,2,modify,Second supplier; Escrow,2099-01-01\n"
        "R-10,Office flood,COO,Rare,Minor,retain,,2099-01-01\n"
    )
    settings = settings_with(db_url, tmp_path, risks, appetite=None)
    sync(settings, engine, index, file_decisions(settings, index, KNOWN))
    rows, _, _ = rows_at(engine, index, settings)
    assert rows["R-9"].flags == ["treatment_not_effective", "residual_above_appetite"]
    assert rows["R-9"].status == "no_evidence"
    assert rows["R-9"].additional_controls == ["Second supplier", "Escrow"]
    # Retained at 1x2 = 2 with no appetite configured: only a score of 1 is tolerated.
    assert rows["R-10"].flags == ["residual_above_appetite"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('id = "R-1"\ntitle = "t"\nowner = "o"\nlikelihood = 6\nimpact = 1\n'
         'treatment = "modify"', "outside the scale"),
        ('id = "R-1"\ntitle = "t"\nowner = "o"\nlikelihood = "Often"\nimpact = 1\n'
         'treatment = "modify"', "neither a level"),
        ('id = "R-1"\ntitle = "t"\nowner = "o"\nlikelihood = 2\nimpact = 1\n'
         'treatment = "ignore"', "treatment"),
        ('id = "R-1"\ntitle = "t"\nowner = "o"\nlikelihood = 2\nimpact = 1\n'
         'treatment = "modify"\ncontrols = ["A.8.99"]', "unknown Annex A"),
        ('id = "R-1"\ntitle = "t"\nowner = "o"\nlikelihood = 2\nimpact = 1\n'
         'treatment = "modify"\naccepted_by = "CEO"', "both accepted_by"),
        ('id = "R-1"\ntitle = "t"\nowner = "o"\nlikelihood = 2\nimpact = 1\n'
         'treatment = "modify"\nresidual_score = 5', "exceeds the inherent"),
        ('id = "R-1"\ntitle = "t"\nlikelihood = 2\nimpact = 1\ntreatment = "modify"',
         "'owner'"),
        ('id = "R-1"\ntitle = "t"\nowner = "o"\nlikelihood = 2\nimpact = 1\n'
         'treatment = "modify"\ncolour = "red"', "unknown key"),
    ],
)
def test_a_bad_risk_is_refused_naming_the_entry(
    tmp_path: Path, index: MappingIndex, text: str, reason: str
) -> None:
    path = tmp_path / "risks.toml"
    path.write_text("[[risk]]\n" + text + "\n")
    with pytest.raises(RiskFileError, match=reason) as info:
        load_risk_file(path, SCALES, index.catalog)
    assert "risk[1] (R-1)" in str(info.value)


def test_duplicates_and_bad_csv_columns_are_refused(tmp_path: Path, index: MappingIndex):
    path = tmp_path / "risks.csv"
    path.write_text("id,title,owner,likelihood,impact,treatment\nR,a,o,1,1,avoid\n"
                    "R,b,o,1,1,avoid\n")
    with pytest.raises(RiskFileError, match="row 3 \\(R\\): duplicate"):
        load_risk_file(path, SCALES, index.catalog)
    path.write_text("id,title,owner,likelihood,impact,treatment,colour\n")
    with pytest.raises(RiskFileError, match="unknown column"):
        load_risk_file(path, SCALES, index.catalog)


def test_an_invalid_risks_file_stops_the_sync_and_records_nothing(
    engine, index, db_url, signer, tmp_path
):
    risks = tmp_path / "risks.toml"
    risks.write_text('[[risk]]\nid = "R-1"\n')
    settings = settings_with(db_url, tmp_path, risks)
    with pytest.raises(DecisionFileError, match="invalid risks file"):
        file_decisions(settings, index, KNOWN)
    rows, _, recorded = rows_at(engine, index, settings)
    assert rows == {} and not recorded


def test_the_documented_example_file_loads(index: MappingIndex) -> None:
    example = Path(__file__).parent.parent / "docs" / "risks.example.toml"
    risks = {r.id: r for r in load_risk_file(example, SCALES, index.catalog)}
    assert risks["R-001"].controls == ("A.8.1", "A.8.24")
    assert (risks["R-001"].inherent_score, risks["R-001"].target_residual) == (16, 4)
    assert risks["R-002"].accepted_by == "CEO"
