"""The Statement of Applicability per ISO/IEC 27001:2022 6.1.3 d): declared beside
measured, contradictions flagged, additional controls, recorded versions for --at.

The store is filled through the real run engine (scripted connector plugin); the SoA
file is recorded with the same code ``annexa decisions sync`` runs; ``annexa soa`` is
the CLI itself (Click's runner, in process).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.config import AnnexaConfig, Settings
from collector.decisions import file_decisions, sync
from collector.runner import run_connector
from mappings.loader import MappingError, load_mappings
from mappings.soa import contradiction, load_scope
from tests.cli_runner import annexa
from tests.fakes import FakeConnector, estate, fake_index, fake_settings

SOA_V1 = """
[meta]
organisation = "Example Ltd"
scope = "Production AWS and corporate identity"
version = "1"
approved_by = "CEO"
approved_on = 2026-11-01

[defaults]
applicable = true
justification = "Selected in the risk treatment plan"

[[control]]
id = "A.8.5"
applicable = true
justification = "Remote access to customer data (R-3)"
status = "implemented"
owner = "Head of IT"
implementation = "Okta MFA for every user"
risks = ["R-3"]
policies = ["access-control"]

[[control]]
id = "A.7.4"
applicable = false
justification = "No own premises"

[[additional]]
id = "X.1"
title = "Customer data residency"
applicable = true
justification = "EU contracts"
status = "planned"
"""


@pytest.fixture
def setup(tmp_path: Path, db_url: str, engine):
    index = fake_index(tmp_path / "maps")
    FakeConnector.script = estate({"d1": True}, {"alice": False})  # A.8.5 fails
    settings = fake_settings(db_url)
    run_connector(settings, settings.connectors[0], engine, index)
    (tmp_path / "soa.toml").write_text(SOA_V1)
    cfg = tmp_path / "annexa.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n[mappings]\npaths = ["maps"]\n'
                   '[audit]\nscope_file = "soa.toml"\n')
    return cfg, index, engine


def _sync(cfg: Path, index) -> None:
    import tomllib

    settings = Settings(AnnexaConfig.model_validate(tomllib.loads(cfg.read_text())), cfg)
    known = {"fake.disk.encrypted", "fake.user.mfa"}
    summary = sync(settings, settings_engine(settings), index,
                   file_decisions(settings, index, known))
    assert summary is not None


def settings_engine(settings: Settings):
    from store.engine import make_engine

    return make_engine(settings.database_url)


def soa_rows(cfg: Path, *extra: str) -> dict[str, dict]:
    code, out, err = annexa("soa", "-c", str(cfg), "-f", "json", *extra)
    assert code == 0, err
    return {r["control"]: r for r in json.loads(out)}


def test_declared_implemented_but_failing_is_flagged(setup):
    cfg, index, _ = setup
    _sync(cfg, index)
    rows = soa_rows(cfg)
    a85 = rows["A.8.5"]
    assert a85["declared"] == "implemented" and a85["measured"] == "fail"
    assert a85["contradiction"] == "declared implemented, measured fail"
    assert a85["owner"] == "Head of IT" and a85["risks"] == "R-3"
    assert a85["implementation"] == "Okta MFA for every user"
    assert a85["soa_version"] == "1" and a85["soa_approved_by"] == "CEO"
    assert rows["A.7.4"]["applicable"] == "no" and not rows["A.7.4"]["contradiction"]
    assert rows["X.1"]["title"] == "Customer data residency"
    assert rows["X.1"]["theme"] == "additional" and rows["X.1"]["declared"] == "planned"
    assert len([r for r in rows if r.startswith("A.")]) == 93
    assert all(r["as_of"] for r in rows.values())


def test_a_soa_change_is_recorded_and_at_shows_the_earlier_one(setup):
    cfg, index, _ = setup
    _sync(cfg, index)
    between = datetime.now(UTC)
    (cfg.parent / "soa.toml").write_text(
        SOA_V1.replace('version = "1"', 'version = "2"').replace(
            'status = "implemented"', 'status = "partially"'
        )
    )
    _sync(cfg, index)
    now = soa_rows(cfg)
    assert now["A.8.5"]["soa_version"] == "2" and now["A.8.5"]["declared"] == "partially"
    then = soa_rows(cfg, "--at", between.isoformat())
    assert then["A.8.5"]["soa_version"] == "1" and then["A.8.5"]["declared"] == "implemented"


def test_the_soa_file_is_validated_naming_the_entry(tmp_path):
    catalog = load_mappings().catalog
    bad = [
        ('[[control]]\nid = "A.8.5"\napplicable = true\njustification = "x"\nstatus = "done"\n',
         "status 'done' is not one of"),
        ('[[control]]\nid = "X.9"\napplicable = true\njustification = "x"\n',
         "goes under [[additional]]"),
        ('[[additional]]\nid = "X.9"\napplicable = true\njustification = "x"\n',
         "needs a 'title'"),
        ('[[additional]]\nid = "A.5.1"\ntitle = "t"\napplicable = true\njustification = "x"\n',
         "list it under [[control]]"),
        ('[meta]\napproved_on = "yesterday"\n', "must be a date"),
    ]
    for n, (text, msg) in enumerate(bad):
        p = tmp_path / f"soa{n}.toml"
        p.write_text("[defaults]\napplicable = true\njustification = \"j\"\n" + text)
        with pytest.raises(MappingError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            load_scope(p, catalog)


@pytest.mark.parametrize(
    ("declared", "measured", "flag"),
    [
        ("implemented", "pass", None),
        ("implemented", "undocumented", "declared implemented, measured undocumented"),
        ("partially", "no_evidence", "declared partially, measured no_evidence"),
        ("not_implemented", "pass", "declared not_implemented, measured pass"),
        ("planned", "fail", None),
        (None, "fail", None),
    ],
)
def test_contradictions(declared, measured, flag):
    assert contradiction(declared, measured, True) == flag
    assert contradiction(declared, measured, False) is None
