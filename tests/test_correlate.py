"""Cross-source identity checks (analyzers/identity.py, the ``identity`` analyzer).

The end-to-end tests run the real Okta, GitHub and Entra connectors against their fakes
(tests/test_okta.py, tests/test_github.py, tests/test_entra.py, all on one local
server), store their runs through the run engine on SQLite *and* PostgreSQL, then run
the correlation step, which reads only the store. The pure tests drive the matching and
the checks on hand-made accounts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from analyzers.identity import (
    PERSON_TYPE,
    IdentityAnalyzer,
    IdentityMapError,
    IdentityOptions,
    correlate,
    load_identity_map,
)
from collector.analysis import run_analyzer, without_analyzers
from collector.config import AnnexaConfig, ConnectorConfig, LoadedConnector, Settings
from collector.plugins import analyzer_run
from collector.runner import run_connector
from connectors.entra import EntraConnector, EntraOptions
from connectors.github import GitHubConnector, GitHubOptions
from connectors.kit import Pseudonymiser
from connectors.okta import OktaConnector, OktaOptions
from core.accounts import PSEUDONYM_PREFIX, Account
from core.checks import REGISTRY, evaluate
from core.connector import CollectContext, Connector, ConnectorOptions
from core.records import Coverage, Evidence
from mappings.loader import load_mappings
from store.queries import evidence_at, findings_at
from tests import clock
from tests import test_entra as entra_fakes
from tests import test_github as github_fakes
from tests import test_okta as okta_fakes
from tests.configs import connector_table, secret_env, write_config

run_correlation = partial(run_analyzer, "identity")

pytestmark = pytest.mark.clock

NOW = datetime.now(UTC)
FAST = {"max_attempts": 2, "retry_min_wait": 0.0, "retry_max_wait": 0.01, "timeout": 5}
MAP = """
[[person]]
id = "alice"
okta = ["alice@acme.example"]      # an Okta login
github = ["alice-gh"]

[[person]]
id = "bob"
emails = ["bob@acme.example"]
github = "bob-gh"

[[person]]
id = "gone"
emails = ["gone@acme.example"]
github = ["gone-gh"]

[[person]]
id = "carol"
okta = ["00u3carol"]               # an Okta user id
github = ["carol-gh"]

[[person]]
id = "erin"
emails = ["erin@acme.example"]
github = ["erin-gh"]
"""


def day(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).date().isoformat()


# --------------------------------------------------------------------------- fixtures


def loaded(
    cls: type[Connector], name: str, options: ConnectorOptions,
    as_loaded: type[LoadedConnector] = LoadedConnector,
) -> LoadedConnector:
    """``cls`` configured as ``name`` with ``options``, as the collector loads it."""
    return as_loaded(ConnectorConfig(type=cls.type, name=name), cls, options)


class _WithCredential(LoadedConnector):
    """Entra built with a static credential (the TLS test covers the real one)."""

    def build(self) -> EntraConnector:
        return EntraConnector(self.name, self.options, credential=entra_fakes.StaticCredential())


class Estate:
    def __init__(self, server: HTTPServer, tmp_path: Path) -> None:
        self.okta = okta_fakes.FakeOkta(server)
        self.gh = github_fakes.FakeGitHub(server)
        self.graph = entra_fakes.FakeGraph(server)
        self.path = tmp_path / "annexa.toml"
        (tmp_path / "identity-map.toml").write_text(MAP, encoding="utf-8")
        base = server.url_for("/").rstrip("/")
        okta = {"org_url": base, "api_token": {"env": "ANNEXA_TEST_OKTA_TOKEN"}, "http": FAST}
        github = {"organization": github_fakes.ORG, "api_url": base, "http": FAST}
        github["token"] = {"env": "ANNEXA_TEST_GITHUB_TOKEN"}
        entra = {"tenant_id": entra_fakes.TENANT, "auth": "managed_identity", "graph_url": base}
        self.loaded = {
            "okta-prod": loaded(OktaConnector, "okta-prod", OktaOptions.model_validate(okta)),
            "github-acme": loaded(
                GitHubConnector, "github-acme", GitHubOptions.model_validate(github)
            ),
            "entra-acme": loaded(
                EntraConnector, "entra-acme", EntraOptions.model_validate(entra), _WithCredential
            ),
        }

    def settings(self, checks: dict[str, dict] | None = None, **identity: Any) -> Settings:
        settings = Settings(AnnexaConfig(), self.path)
        cfg = ConnectorConfig(
            type="identity",
            name="identity-correlation",
            options={"identity_map": "identity-map.toml", **identity},
            checks=checks or {},
        )
        settings.connectors = [
            *self.loaded.values(),
            LoadedConnector(
                cfg, analyzer_run(IdentityAnalyzer), IdentityOptions.model_validate(cfg.options)
            ),
        ]
        return settings

    def collect(self, engine, index, *names: str) -> None:
        settings = self.settings()
        for name in names or self.loaded:
            run_connector(settings, self.loaded[name], engine, index)


@pytest.fixture
def estate(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Estate:
    httpserver.no_handler_status_code = 418
    monkeypatch.setenv("ANNEXA_TEST_OKTA_TOKEN", okta_fakes.TOKEN)
    monkeypatch.setenv("ANNEXA_TEST_GITHUB_TOKEN", github_fakes.TOKEN)
    e = Estate(httpserver, tmp_path)
    user = okta_fakes.okta_user
    e.okta.add_user(user("00u0alice", "alice@acme.example"), [okta_fakes.factor("push")])
    e.okta.add_user(user("00u1bob", "bob@acme.example"), [okta_fakes.factor("push")])
    e.okta.add_user(
        user("00u2gone", "gone@acme.example", "DEPROVISIONED", status_changed=30, last_login=31)
    )
    # Suspended half a day ago: GitHub de-provisioning may lag within the grace period.
    e.okta.add_user(user("00u3carol", "carol@acme.example", "SUSPENDED", status_changed=0.5))
    # Suspended 1.2 days ago: past the grace at any hour. Cut to the day, it read as
    # within it from about 05:00 UTC on (the offboarding day's end is under a day ago).
    e.okta.add_user(user("00u4erin", "erin@acme.example", "SUSPENDED", status_changed=1.2))
    for login in ("alice-gh", "bob-gh", "gone-gh", "carol-gh", "erin-gh", "stray-gh"):
        e.gh.member(login)
    e.gh.collaborators.append(github_fakes.simple_user("vendor", 900))
    g = e.graph
    g.add_user(entra_fakes.graph_user("e-alice", "alice@acme.example"), ["fido2SecurityKey"])
    g.add_user(entra_fakes.graph_user("e-gone", "gone@acme.example"), ["fido2SecurityKey"])
    g.add_user(entra_fakes.graph_user("e-dave", "dave@acme.example", enabled=False), [])
    g.security_defaults = True
    return e


def person_findings(engine, check_id: str) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {
            f["resource_id"]: f
            for f in findings_at(conn, check_id=check_id, source="identity-correlation")
        }


def failing(engine, check_id: str) -> set[str]:
    """The people (or accounts linked to no one) ``check_id`` failed on."""
    return {p for p, f in person_findings(engine, check_id).items() if f["status"] == "fail"}


def person_payloads(engine) -> dict[str, dict[str, Any]]:
    """Each correlated person's evidence payload, by person id."""
    with engine.connect() as conn:  # evidence_at streams: read it while connected
        found = list(evidence_at(conn, resource_type=PERSON_TYPE))
    return {e["resource_id"]: e["payload"] for e in found}


# --------------------------------------------------------------------------- end to end


def test_offboarded_in_the_idp_but_active_elsewhere_fails_naming_both(estate, engine):
    index = load_mappings()
    estate.collect(engine, index)
    summary = run_correlation(estate.settings(), engine, index)
    assert summary is not None and summary.status == "succeeded", summary.errors
    assert summary.source == "identity-correlation"
    off = person_findings(engine, "identity.person.offboarded_but_active")
    assert {p for p, f in off.items() if f["status"] == "fail"} == {"gone", "erin"}
    gone = off["gone"]["message"]
    # Both records are named: the offboarded IdP account and every account still active.
    assert "okta-prod okta.user.account 00u2gone" in gone and "DEPROVISIONED since" in gone
    assert "github-acme github.member.account gone-gh" in gone
    assert "entra-acme entra.user.account e-gone" in gone
    assert off["carol"]["status"] == "pass"  # within the one-day grace period
    assert off["alice"]["status"] == "pass" and off["bob"]["status"] == "pass"
    assert set(off["gone"]["controls"]) == {"A.5.18"}  # access removal, not A.6.5
    assert failing(engine, "identity.person.account_linked_to_idp") == {
        "github-acme:stray-gh",
        "github-acme:vendor",
    }
    people = person_payloads(engine)
    # alice: Okta login (map) + GitHub (map) + Entra (e-mail) in one person.
    assert {a["source"] for a in people["alice"]["accounts"]} == {
        "okta-prod",
        "github-acme",
        "entra-acme",
    }
    assert people["alice"]["matched_by"] == ["email", "identity_map"]
    # dave exists in Entra only: nothing to correlate, no evidence.
    assert not any("dave" in pid for pid in people)


def test_a_person_removed_from_the_idp_is_judged_too(estate, engine):
    index = load_mappings()
    estate.collect(engine, index)
    estate.okta.users = [u for u in estate.okta.users if u["id"] != "00u1bob"]
    estate.collect(engine, index, "okta-prod")  # bob is deleted in Okta: tombstoned
    summary = run_correlation(estate.settings(), engine, index)
    assert summary.status == "succeeded"
    bob = person_findings(engine, "identity.person.offboarded_but_active")["bob"]
    assert bob["status"] == "pass" and "within the 1-day grace period" in bob["message"]
    no_grace = {"identity.person.offboarded_but_active": {"grace_days": 0}}
    assert run_correlation(estate.settings(no_grace), engine, index).status == "succeeded"
    bob = person_findings(engine, "identity.person.offboarded_but_active")["bob"]
    assert bob["status"] == "fail"
    assert "00u1bob" in bob["message"] and "deleted since" in bob["message"]
    assert "github-acme github.member.account bob-gh" in bob["message"]


def test_fixing_the_leak_closes_the_failure_on_the_next_correlation(estate, engine):
    index = load_mappings()
    estate.collect(engine, index)
    run_correlation(estate.settings(), engine, index)
    estate.gh.members = [m for m in estate.gh.members if m["login"] not in ("gone-gh", "stray-gh")]
    estate.graph.users = [u for u in estate.graph.users if u["id"] != "e-gone"]
    estate.collect(engine, index, "github-acme", "entra-acme")
    second = run_correlation(estate.settings(), engine, index)
    assert second.status == "succeeded"
    off = person_findings(engine, "identity.person.offboarded_but_active")
    # Entra's account is now deleted (tombstoned → "removed"), GitHub's gone: offboarded
    # everywhere, judged on the new facts.
    assert off["gone"]["status"] == "pass" and "active nowhere else" in off["gone"]["message"]
    linked = person_findings(engine, "identity.person.account_linked_to_idp")
    # stray-gh left GitHub: its person is no longer seen, so its findings are closed.
    assert "github-acme:stray-gh" not in linked
    assert second.counts["evidence_closed"] == 1
    # Its four checks' findings (two of them not_applicable: no HR record) are closed.
    assert second.counts["findings_closed"] == 4


def test_a_stale_source_makes_the_correlation_unit_an_error_and_closes_nothing(estate, engine):
    index = load_mappings()
    estate.collect(engine, index)
    run_correlation(estate.settings(), engine, index)
    # The GitHub member listing now fails: its evidence stays as last read.
    estate.gh.fault(f"/orgs/{github_fakes.ORG}/members", *[(502, "", {})] * 20)
    estate.gh.members = [m for m in estate.gh.members if m["login"] != "stray-gh"]
    estate.collect(engine, index, "github-acme")
    summary = run_correlation(estate.settings(), engine, index)
    assert summary.status == "failed"
    assert any("github-acme: member was not read cleanly" in e for e in summary.errors)
    assert summary.counts["evidence_closed"] == 0
    linked = person_findings(engine, "identity.person.account_linked_to_idp")
    assert linked["github-acme:stray-gh"]["status"] == "fail"  # not closed by absence
    errors = [
        f for f in findings_at(engine.connect(), source="identity-correlation", status="error")
    ]
    assert {f["check_id"] for f in errors} == {
        "identity.person.offboarded_but_active",
        "identity.person.account_linked_to_idp",
        "identity.person.leaver_access_removed",
        "identity.person.no_access_before_hire",
    }
    assert errors[0]["resource_id"] == "identity:people/global/person"


def test_when_the_correlation_runs(estate, engine, tmp_path):
    index = load_mappings()
    settings = estate.settings()
    only_okta = [settings.connectors[0]]
    # --only one source: runs (that source changed); --only nothing relevant: does not.
    estate.collect(engine, index)
    assert run_correlation(settings, engine, index, only_okta) is not None
    assert run_correlation(settings, engine, index, []) is None
    # Fewer than two identity sources after `sources` filtering: nothing to correlate.
    assert run_correlation(estate.settings(sources=["okta-prod"]), engine, index) is None
    # The identity instance is taken out of the normal collection loop.
    assert [c.cfg.type for c in without_analyzers(settings.connectors)] == [
        "okta",
        "github",
        "entra",
    ]
    # A misnamed source is reported, not silently ignored.
    named = estate.settings(sources=["okta-prod", "github-acme", "okta-typo"])
    summary = run_correlation(named, engine, index)
    assert any("okta-typo: no such identity connector" in e for e in summary.errors)


def test_identity_map_errors_are_unit_errors_naming_file_and_entry(estate, engine, tmp_path):
    index = load_mappings()
    estate.collect(engine, index)
    (tmp_path / "identity-map.toml").write_text('[[person]]\nid = "x"\nokta = [1]\n', "utf-8")
    summary = run_correlation(estate.settings(), engine, index)
    assert summary.status == "failed"
    assert any("identity-map.toml: person[0].okta: must be a string" in e for e in summary.errors)


def test_bind_for_schedulers_injects_the_snapshot(estate, engine):
    """What a scheduler (the daemon) does with a configured identity instance."""
    from collector.analysis import bind as bind_correlation

    index = load_mappings()
    estate.collect(engine, index)
    settings = estate.settings()
    okta_lc, identity_lc = settings.connectors[0], settings.connectors[-1]
    assert bind_correlation(settings, okta_lc, engine) is okta_lc
    bound = bind_correlation(settings, identity_lc, engine)
    summary = run_connector(settings, bound, engine, index)
    assert summary.status == "succeeded" and summary.counts["evidence_seen"] == 7


def test_the_daemon_runs_a_scheduled_identity_instance_on_the_store(estate, engine):
    """The daemon schedules every configured instance itself: its run path must bind the
    identity instance to the store as `annexa collect` does, not run it unbound."""
    import threading

    from collector.daemon.execute import collect

    index = load_mappings()
    estate.collect(engine, index)
    settings = estate.settings()
    identity_lc = settings.connectors[-1]
    assert identity_lc.cfg.type == "identity"
    outcome = collect(
        settings,
        identity_lc,
        engine,
        index,
        run_id="daemon-identity-1",
        cancel_event=threading.Event(),
        spool_dir=None,
    )
    assert outcome.status == "succeeded" and outcome.summary is not None, outcome
    assert outcome.summary.counts["evidence_seen"] == 7, outcome.summary.errors


def test_standalone_instance_without_snapshot_reports_an_error():
    conn = analyzer_run(IdentityAnalyzer)("identity", IdentityOptions())
    (cov,) = list(conn.collect(CollectContext(run_id="x")))
    assert isinstance(cov, Coverage) and cov.service == "*" and not cov.ok
    assert "runs after the sources whose stored evidence it reads" in cov.error


def test_the_pseudonym_prefix_is_the_connectors_one():
    """core cannot import connectors.kit: the match-key prefix is held equal here."""
    assert Pseudonymiser.PREFIX == PSEUDONYM_PREFIX


def test_identity_and_device_owners_are_registered_analyzers():
    from core.analyzer import available_analyzers
    from core.connector import available_connectors

    analyzers = available_analyzers()
    assert analyzers["identity"] is IdentityAnalyzer
    assert {"identity", "device_owners"} <= set(analyzers)
    assert not {"identity", "device_owners"} & set(available_connectors())


def test_cli_correlate_command_and_config_table(estate, engine, db_url, tmp_path):
    """`annexa correlate` as a subprocess, configured by a [[connectors]] type = "identity"
    table; the Okta and GitHub runs were stored before."""
    import json
    import os
    import subprocess
    import sys

    index = load_mappings()
    estate.collect(engine, index, "okta-prod", "github-acme")
    cfg = tmp_path / "annexa.toml"
    okta_url = estate.loaded["okta-prod"].options.org_url
    gh_url = estate.loaded["github-acme"].options.api_url
    write_config(
        cfg,
        db_url,
        connector_table("okta", "okta-prod",
                  {"org_url": okta_url, "api_token": secret_env("ANNEXA_TEST_OKTA_TOKEN")}),
        connector_table("github", "github-acme", {
            "organization": github_fakes.ORG, "api_url": gh_url,
            "token": secret_env("ANNEXA_TEST_GITHUB_TOKEN"),
        }),
        connector_table("identity", "people", {"identity_map": "identity-map.toml"},
                  **{"identity.person.offboarded_but_active": {"grace_days": 0}}),
        json_logs=True,
    )
    proc = subprocess.run(
        clock.command(
            [sys.executable, "-m", "collector", "correlate", "-c", str(cfg), "-f", "json"]
        ),
        capture_output=True,
        text=True,
        env=clock.env(dict(os.environ)),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert row["connector"] == "people" and row["status"] == "succeeded"
    # gone (okta DEPROVISIONED, GitHub member), erin and carol (no grace) fail; stray +
    # vendor are linked to no IdP account.
    assert row["failing"] == 5
    with engine.connect() as conn:
        failing = {
            (f["check_id"], f["resource_id"])
            for f in findings_at(conn, source="people", status="fail")
        }
    assert ("identity.person.offboarded_but_active", "gone") in failing
    assert ("identity.person.offboarded_but_active", "carol") in failing
    assert ("identity.person.offboarded_but_active", "erin") in failing


# --------------------------------------------------------------------------- pure matching


def acct(source: str, kind: str, rid: str, state: str = "active", **kw: Any) -> Account:
    idp = kind != "github"
    rtype = "github.member.account" if kind == "github" else f"{kind}.user.account"
    return Account(
        source=source,
        kind=kind,
        resource_type=rtype,
        id=rid,
        login=kw.get("login", rid),
        state=state,
        status=kw.get("status", state.upper()),
        since=kw.get("since"),
        idp=idp,
        emails=tuple(kw.get("emails", ())),
    )


def judge(payload: dict[str, Any], check_id: str, **params: Any) -> Any:
    spec = REGISTRY.get(check_id)
    ev = Evidence("people", "global", PERSON_TYPE, payload["person"], payload)
    return next(evaluate(ev, [spec], {check_id: spec.params_with(params)}))


def people_of(accounts: list[Account], *args: Any, **kw: Any) -> dict[str, dict[str, Any]]:
    return dict(correlate(accounts, *args, **kw))


def test_email_matching_across_idps_either_direction_fails():
    """Suspended in one IdP, still active in another: whichever way round, it fails."""
    accounts = [
        acct("okta", "okta", "00u1", emails=["ann@x.io"]),
        acct("gws", "workspace", "109", "offboarded", status="suspended", emails=["Ann@X.io"]),
        acct("entra", "entra", "e1", emails=["zed@x.io"]),
    ]
    people = people_of(accounts)
    assert set(people) == {"ann@x.io"}  # zed is in one source only: nothing to correlate
    f = judge(people["ann@x.io"], "identity.person.offboarded_but_active")
    assert f.status == "fail"
    assert "gws workspace.user.account 109 is suspended" in f.message
    assert "still active: okta okta.user.account 00u1" in f.message
    accounts[0].state, accounts[1].state = "offboarded", "active"
    f = judge(people_of(accounts)["ann@x.io"], "identity.person.offboarded_but_active")
    assert f.status == "fail" and "still active: gws workspace.user.account 109" in f.message
    accounts[1].state = "offboarded"
    f = judge(people_of(accounts)["ann@x.io"], "identity.person.offboarded_but_active")
    assert f.status == "pass" and "active nowhere else" in f.message


def test_rehire_with_a_new_active_account_in_the_same_idp_passes():
    accounts = [
        acct("okta", "okta", "00uOLD", "offboarded", since=day(400), emails=["kim@x.io"]),
        acct("okta", "okta", "00uNEW", emails=["kim@x.io"]),
        acct("gh", "github", "kim-gh"),
    ]
    people = people_of(
        accounts, load_identity_map_text('[[person]]\nid="kim"\ngithub="kim-gh"\nemails="kim@x.io"')
    )
    assert judge(people["kim"], "identity.person.offboarded_but_active").status == "pass"


def test_grace_days_parameter():
    accounts = [
        acct("okta", "okta", "00u1", "offboarded", since=day(3), emails=["lee@x.io"]),
        acct("entra", "entra", "e1", emails=["lee@x.io"]),
    ]
    payload = people_of(accounts)["lee@x.io"]
    assert judge(payload, "identity.person.offboarded_but_active").status == "fail"
    assert judge(payload, "identity.person.offboarded_but_active", grace_days=7).status == "pass"


def test_pseudonymised_sources_match_each_other_and_the_map():
    p = Pseudonymiser("k" * 32)
    accounts = [
        acct("okta", "okta", "00u1", "offboarded", emails=[p("ann@x.io")], login=p("ann@x.io")),
        acct("entra", "entra", "e1", emails=[p("ANN@x.io")]),
        acct("gh", "github", p("ann-gh"), login=p("ann-gh")),
    ]
    mapped = load_identity_map_text(
        '[[person]]\nid = "ann"\ngithub = ["Ann-GH"]\nemails = ["ann@x.io"]'
    )
    people = people_of(accounts, mapped, pseudo=p, pseudonymise_ids=True)
    (pid,) = people
    assert pid == p("ann") and "ann" not in str(people[pid]).replace(pid, "")
    assert set(people_of(accounts, mapped, pseudo=p)) == {"ann"}  # ids in clear by default
    assert {a["source"] for a in people[pid]["accounts"]} == {"okta", "entra", "gh"}
    assert judge(people[pid], "identity.person.offboarded_but_active").status == "fail"
    # Without the key, the map cannot reach pseudonymised accounts (only e-mail matching).
    assert {a["source"] for a in people_of(accounts, mapped)[p("ann@x.io")]["accounts"]} == {
        "okta",
        "entra",
    }


def test_match_by_email_can_be_turned_off_and_unlinked_emission_too():
    accounts = [
        acct("okta", "okta", "00u1", emails=["a@x.io"]),
        acct("entra", "entra", "e1", emails=["a@x.io"]),
        acct("gh", "github", "lonely"),
    ]
    assert set(people_of(accounts)) == {"a@x.io", "gh:lonely"}
    assert people_of(accounts, match_by_email=False, emit_unlinked=False) == {}


def load_identity_map_text(text: str, tmp: Path | None = None) -> list:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(tmp or d) / "map.toml"
        path.write_text(text, encoding="utf-8")
        return load_identity_map(path)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[[person]]\nokta = ['x']", "person[0]: id must be a non-empty string"),
        (
            "[[person]]\nid='a'\nokta=['x']\n[[person]]\nid='a'\nokta=['y']",
            "person[1]: duplicate id",
        ),
        (
            "[[person]]\nid='a'\nokta=['x']\n[[person]]\nid='b'\nokta=['X']",
            "person[1].okta: 'x' is already mapped",
        ),
        ("[[person]]\nid='a'\nslack=['x']", "person[0]: unknown key 'slack'"),
        ("[[person]]\nid='a'", "person[0]: person 'a' names no e-mail and no account"),
        ("people = 1", "<file>: unknown top-level key 'people'"),
        ("[[person]\nid='a'", "<file>: invalid TOML"),
    ],
)
def test_identity_map_validation(text, where, tmp_path):
    with pytest.raises(IdentityMapError, match="map.toml: " + __import__("re").escape(where)):
        load_identity_map_text(text, tmp_path)


def test_the_example_identity_map_is_valid():
    example = Path(__file__).resolve().parents[1] / "docs" / "identity-map.example.toml"
    people = load_identity_map(example)
    assert len(people) >= 2 and all(p.id for p in people)


def test_every_identity_check_is_documented():
    specs = IdentityAnalyzer.checks()
    assert {s.id for s in specs} == {
        "identity.person.offboarded_but_active",
        "identity.person.account_linked_to_idp",
        "identity.person.leaver_access_removed",
        "identity.person.no_access_before_hire",
    }
    for s in specs:
        assert s.title and s.rationale and s.remediation and s.resource_type == PERSON_TYPE


def test_identity_options_validation():
    assert IdentityOptions.model_validate({}).match_by_email is True
    for bad in ({"pseudonymise": True}, {"sources": "okta"}, {"unknown": 1}):
        with pytest.raises(ValueError):
            IdentityOptions.model_validate(bad)


# ---------------------------------------------------------------- HR as a source of people


def test_an_hr_leaver_still_active_in_okta_and_github_fails_a518_naming_both(
    estate, engine, monkeypatch, tmp_path
):
    """BambooHR joins the identity sources: its leavers and joiners are judged against the
    accounts of the same person (matched by work e-mail, or the identity map)."""
    from connectors.bamboohr import BambooHRConnector, BambooHROptions
    from tests import test_bamboohr as bamboo_fakes

    monkeypatch.setenv("ANNEXA_TEST_BAMBOOHR_KEY", bamboo_fakes.API_KEY)
    hr = bamboo_fakes.FakeBambooHR(estate.okta.server)
    emp = bamboo_fakes.employee
    hr.employees += [
        emp(201, "frank@acme.example", hire="2020-01-06", terminated=day(30)),
        emp(202, "alice@acme.example", hire="2020-01-06"),
        emp(203, "grace@acme.example", hire=(NOW + timedelta(days=30)).date().isoformat()),
        emp(204, "gone@acme.example", hire="2020-01-06", terminated=day(31)),
        emp(205, "hronly@acme.example", hire="2020-01-06"),
    ]
    user = okta_fakes.okta_user
    estate.okta.add_user(user("00u5frank", "frank@acme.example"), [okta_fakes.factor("push")])
    estate.okta.add_user(user("00u6grace", "grace@acme.example"), [okta_fakes.factor("push")])
    estate.gh.member("frank-gh")
    (tmp_path / "identity-map.toml").write_text(
        MAP + '\n[[person]]\nid = "frank"\nemails = ["frank@acme.example"]\n'
        'github = ["frank-gh"]\n',
        encoding="utf-8",
    )
    options = BambooHROptions.model_validate(bamboo_fakes.options(hr))
    estate.loaded["bamboohr-acme"] = loaded(BambooHRConnector, "bamboohr-acme", options)
    index = load_mappings()
    estate.collect(engine, index)
    summary = run_correlation(estate.settings(), engine, index)
    assert summary is not None and summary.status == "succeeded", summary.errors

    leavers = person_findings(engine, "identity.person.leaver_access_removed")
    assert {p for p, f in leavers.items() if f["status"] == "fail"} == {"frank", "gone"}
    frank = leavers["frank"]
    assert set(frank["controls"]) == {"A.5.18"}
    assert f"left on {day(30)}" in frank["message"]
    assert "bamboohr-acme bamboohr.employee.record 201" in frank["message"]
    # Both accounts still active are named.
    assert "okta-prod okta.user.account 00u5frank, frank@acme.example (ACTIVE)" in frank["message"]
    assert "github-acme github.member.account frank-gh" in frank["message"]
    # gone: deprovisioned in Okta, but GitHub and Entra still active.
    assert "github-acme github.member.account gone-gh" in leavers["gone"]["message"]
    assert "entra-acme entra.user.account e-gone" in leavers["gone"]["message"]
    assert "00u2gone" not in leavers["gone"]["message"].split("still active")[1]
    assert leavers["alice"]["status"] == "pass" and "employed" in leavers["alice"]["message"]
    assert leavers["carol"]["status"] == "not_applicable"  # no HR record

    early = person_findings(engine, "identity.person.no_access_before_hire")
    assert {p for p, f in early.items() if f["status"] == "fail"} == {"grace@acme.example"}
    assert "okta-prod okta.user.account 00u6grace" in early["grace@acme.example"]["message"]
    assert set(early["grace@acme.example"]["controls"]) == {"A.5.16", "A.5.18"}
    assert early["alice"]["status"] == "pass"

    # HR records are people, not access: the existing checks are unchanged by them.
    off = person_findings(engine, "identity.person.offboarded_but_active")
    assert {p for p, f in off.items() if f["status"] == "fail"} == {"gone", "erin"}
    assert "bamboohr" not in off["gone"]["message"]
    assert failing(engine, "identity.person.account_linked_to_idp") == {
        "github-acme:stray-gh",
        "github-acme:vendor",
    }
    people = person_payloads(engine)
    assert not any("hronly" in pid for pid in people)  # known to HR only: nothing to judge
    [record] = [a for a in people["frank"]["accounts"] if a.get("hr")]
    assert record["termination_date"] == day(30) and record["hire_date"] == "2020-01-06"
