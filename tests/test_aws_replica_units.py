"""The AWS connector read unit by unit, as daemon replicas read it.

``AwsConnector.plan_units`` then ``collect_unit`` for every planned unit, each driven
through the run engine (``drive(..., unit=...)``, the path of
``collector.daemon.distribute``), must give the findings and evidence ``collect`` gives
for the same organisation on moto (``seed_org_estate``: a management account and three
members reached by assuming ``annexa-audit``).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select

from annexa_demo.aws.estate import seed_org_estate
from collector.config import load_settings
from collector.daemon.distribute import Distributor, ensure_queue_schema
from connectors.aws import AwsConnector, AwsOptions
from connectors.aws.connector import SERVICES
from core.connector import CollectContext
from core.records import Coverage
from mappings.loader import load_mappings
from store.engine import make_engine
from store.integrity import verify
from store.migrate import upgrade
from store.schema import evidence as evidence_t
from store.schema import findings as findings_t
from store.schema import runs
from tests.daemon_fixtures import write_config
from tests.harness import RunResult, run_built, run_built_units

REGIONS = ["us-east-1", "eu-west-1"]
GLOBAL_SERVICES = {"iam", "s3", "s3control", "cloudtrail", "organizations", "cloudfront",
                   "budgets"}


def org_connector(**extra: object) -> AwsConnector:
    return AwsConnector("aws-org", AwsOptions(
        regions=REGIONS, organization=True, member_role_name="annexa-audit",
        session_name="annexa-test", external_id="ext-123", max_workers=8, **extra))


def findings(run: RunResult) -> Counter[tuple[str, str, str]]:
    return Counter((f.check_id, f.resource_id, f.status) for f in run.findings)


def evidence(run: RunResult) -> Counter[tuple[str, str, str]]:
    return Counter((e.resource_type, e.resource_id, e.content_hash()) for e in run.evidence)


def units(run: RunResult, name: str) -> Counter[tuple[str, str, str, bool]]:
    return Counter((c.scope, c.region, c.service, c.ok) for c in run.coverage
                   if c.scope != name)


@pytest.fixture(scope="module")
def org(aws_module_env: str) -> dict:
    return seed_org_estate(aws_module_env)


@pytest.fixture(scope="module")
def whole(org: dict) -> RunResult:
    return run_built(org_connector())


def test_units_give_the_findings_and_evidence_of_collect(org: dict, whole: RunResult) -> None:
    plan, by_unit = run_built_units(org_connector())
    accounts = set(org["accounts"])
    assert len(accounts) == 4
    # Every (account, region, service) collect reads, each once; the global services
    # as collect names them.
    assert sorted(plan) == sorted(
        [(a, "global", s) for a in accounts for s in GLOBAL_SERVICES]
        + [(a, r, s) for a in accounts for r in REGIONS for s in set(SERVICES) - GLOBAL_SERVICES]
    )
    assert whole.status == by_unit.status == "succeeded"
    assert whole.findings and whole.evidence
    assert {f.status for f in whole.findings} >= {"pass", "fail"}
    assert findings(by_unit) == findings(whole)
    assert evidence(by_unit) == evidence(whole)
    # The same units, each once, and every account's own opening once.
    assert units(by_unit, "aws-org") == units(whole, "aws-org")
    assert sum(1 for c in by_unit.coverage if c.service == "*") == len(accounts)


def test_a_unit_the_connector_does_not_plan_is_an_error(org: dict) -> None:
    """A unit naming a service left out, or a regional service in ``global``, is an
    error of that unit (the job named something this configuration does not read)."""
    connector = org_connector(services=["s3control"])
    ctx = CollectContext(run_id="t")
    for unit in [(org["management"], "global", "iam"), (org["management"], "global", "kms")]:
        records = list(connector.collect_unit(ctx, *unit))
        assert len(records) == 1 and isinstance(records[0], Coverage)
        assert (records[0].scope, records[0].region, records[0].service) == unit
        assert not records[0].ok and "not a unit this connector plans" in str(records[0].error)


def test_a_missing_included_account_is_a_whole_account_unit(org: dict) -> None:
    member = next(a for a in org["accounts"] if a != org["management"])
    connector = org_connector(services=["s3control"],
                              include_accounts=[member, "999999999999"])
    plan, by_unit = run_built_units(connector)
    assert plan == [("999999999999", "global", "*"), (member, "global", "s3control")]
    whole = run_built(connector)
    assert findings(by_unit) == findings(whole)
    missing = [c for c in by_unit.coverage if c.scope == "999999999999"]
    assert [(c.service, c.ok) for c in missing] == [("*", False)]
    assert {f.status for f in by_unit.findings if f.scope == "999999999999"} == {"error"}


def test_regions_are_discovered_per_account_when_not_configured(org: dict) -> None:
    member = next(a for a in org["accounts"] if a != org["management"])
    connector = AwsConnector("aws-org", AwsOptions(
        organization=True, member_role_name="annexa-audit", include_accounts=[member],
        services=["iam", "kms"]))
    plan = connector.plan_units(CollectContext(run_id="t"))
    assert plan is not None
    regional = {r for a, r, s in plan if s == "kms"}
    assert plan[0] == (member, "global", "iam")
    assert set(REGIONS) <= regional and "global" not in regional
    assert all(a == member for a, _, _ in plan)


def test_bulk_inventory_is_read_whole(org: dict) -> None:
    """The aggregator's inventory is one query for the organisation per run: no units."""
    connector = org_connector(inventory="config_aggregator", config_aggregator_name="org")
    assert connector.plan_units(CollectContext(run_id="t")) is None


def test_planning_fails_loudly_when_the_organisation_cannot_be_listed(
    aws_module_env: str,
) -> None:
    """A caller that cannot list the organisation: the distributor logs why and reads
    the instance whole, which records the failure as collect does."""
    # An account outside any organisation (moto lets the role be assumed).
    connector = org_connector(role_arn="arn:aws:iam::111122223333:role/auditor")
    with pytest.raises(ClientError):
        connector.plan_units(CollectContext(run_id="t"))
    whole = run_built(connector)
    assert whole.status == "failed"
    assert [(c.scope, c.service, c.ok) for c in whole.coverage] == [("aws-org", "*", False)]
    assert "organisation accounts could not be listed" in str(whole.coverage[0].error)


#: The distributed run reads fewer services (every unit is a PostgreSQL transaction).
DIST_SERVICES = ["iam", "s3", "s3control", "ec2", "kms", "logs"]


def test_two_replicas_seal_one_run_with_the_findings_of_collect(
    org: dict, postgres_url: str, tmp_path: Path,
) -> None:
    """Two replicas (real Distributors on one PostgreSQL, procrastinate's schema, jobs
    deferred) share the organisation's units, each executing every other unit through
    the run engine, in process: the run is sealed once, by the replica making the last
    unit final, with the findings and evidence ``collect`` gives."""
    options = {"regions": REGIONS, "organization": True, "member_role_name": "annexa-audit",
               "session_name": "annexa-test", "external_id": "ext-123", "max_workers": 4,
               "services": DIST_SERVICES}
    engine = make_engine(postgres_url)
    upgrade(engine)
    ensure_queue_schema(postgres_url)
    replicas: list[Distributor] = []
    for n in range(2):
        cfg = write_config(tmp_path / f"r{n}" / "annexa.toml", postgres_url, connectors=[{
            "type": "aws", "name": "aws-org", "schedule": "every 1h", "options": options,
        }], daemon={"distribute": True})
        settings = load_settings(cfg)
        d = settings.model.daemon
        dist = Distributor(
            settings, engine, load_mappings(settings.mapping_dirs), f"test:{n}:aws",
            workers=1, attempts=d.unit_attempts, unit_timeout=d.seconds("unit_timeout"),
            heartbeat=0.5, stalled_after=60, grace=1, unit_lock=d.unit_lock,
        )
        dist._defer_app.open()
        replicas.append(dist)
    try:
        run_id = "00000000-0000-4000-8000-0000000a0b5e"
        lc = replicas[0].settings.connectors[0]
        planned = replicas[0].plan(lc, run_id)
        assert replicas[0].dispatch(lc, run_id) == len(planned) > 8
        sealed = []
        for i, unit in enumerate(planned):
            dist = replicas[i % 2]
            dist._task(run_id, "aws-org", *unit)
            with engine.connect() as conn:
                sealed.append(conn.execute(select(runs.c.status).where(
                    runs.c.id == run_id)).scalar_one())
        # Sealed by the last unit, not before.
        assert sealed[:-1] == ["running"] * (len(planned) - 1)
        assert sealed[-1] == "succeeded"
        with engine.connect() as conn:
            run = conn.execute(select(runs).where(runs.c.id == run_id)).one()
            stored_findings = Counter(
                (f.check_id, f.resource_id, f.status)
                for f in conn.execute(select(findings_t).where(findings_t.c.run_id == run_id)))
            stored_evidence = Counter(
                (e.resource_type, e.resource_id, e.content_hash)
                for e in conn.execute(select(evidence_t).where(evidence_t.c.run_id == run_id)))
        assert json.loads(run.counts)["replicas"] == ["test:0:aws", "test:1:aws"]
        assert json.loads(run.counts)["units"] == len(planned)
        expected = run_built(AwsConnector("aws-org", AwsOptions(**options)))
        assert expected.status == "succeeded"
        assert stored_findings == findings(expected)
        assert stored_evidence == evidence(expected)
        assert verify(engine).ok
    finally:
        for dist in replicas:
            dist._defer_app.close()
        engine.dispose()
