"""The auditor commands end to end through the real ``annexa`` CLI.

The history is written by the real run writer (see test_auditor_history); the CLI then
reads it back as an auditor would. Most commands run in-process through Click's test
runner (the same Typer app, options, rendering and exit codes — only the interpreter
start-up is saved); exit codes that matter to scripts are also checked through a real
``python -m collector`` subprocess. One SQLite database keeps this file fast; every
query underneath is exercised on both engines by the other test_auditor_* files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from mappings.loader import load_mappings
from store.engine import make_engine
from store.migrate import upgrade
from tests.cli_runner import CliResult, annexa
from tests.test_auditor_history import History, build_history


def annexa_proc(*args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point in a subprocess."""
    env = {k: v for k, v in os.environ.items() if k != "ANNEXA_DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )


def flat(text: str) -> str:
    """stderr with rich's line wrapping undone."""
    return " ".join(text.split())


def ok_json(proc: CliResult | subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, History, Path]:
    tmp = tmp_path_factory.mktemp("cli")
    url = f"sqlite:///{tmp / 'annexa.db'}"
    engine = make_engine(url)
    upgrade(engine)
    (tmp / "exceptions.toml").write_text(
        '[[exception]]\nid = "EX-1"\ncheck = "aws.s3.bucket_default_encryption"\n'
        'resource = "legacy-export-*"\nreason = "decommissioning"\napproved_by = "CISO"\n'
        "expires = 2099-12-31\n"
    )
    (tmp / "scope.toml").write_text(
        '[meta]\norganisation = "Example Ltd"\nscope = "test estate"\n'
        '[defaults]\napplicable = true\njustification = "risk treatment plan"\n'
        '[[control]]\nid = "A.7.4"\napplicable = false\njustification = "no premises"\n'
    )
    cfg = tmp / "annexa.toml"
    cfg.write_text(
        f'[database]\nurl = "{url}"\n[log]\nformat = "json"\n'
        '[audit]\nscope_file = "scope.toml"\nexceptions_file = "exceptions.toml"\n'
    )
    # Decisions count from when they are recorded: record them before the history.
    synced = annexa("decisions", "sync", "-c", str(cfg))
    assert synced.returncode == 0 and "decisions recorded" in synced.stdout, synced.stderr
    h = build_history(engine, load_mappings(), tmp)
    engine.dispose()
    return cfg, h, tmp


def test_controls_at_period_and_crosswalks(setup: tuple[Path, History, Path]) -> None:
    cfg, h, _ = setup
    c = str(cfg)
    at = h.instants["failing_excepted"].isoformat()
    then = {
        r["control"]: r for r in ok_json(annexa("controls", "-c", c, "--at", at, "-f", "json"))
    }
    assert then["A.8.24"]["status"] == "excepted"
    assert then["A.8.24"]["excepted_resources"] == [
        "legacy-export-1 (aws.s3.bucket_default_encryption)"
    ]
    assert then["A.5.2"]["status"] == "pass"
    assert then["A.5.2"]["manual_evidence"][0]["added_by"] == "alice"
    now = {r["control"]: r["status"] for r in ok_json(annexa("controls", "-c", c, "-f", "json"))}
    assert now["A.8.24"] == "pass" and now["A.5.2"] == "pass"
    expired_at = h.instants["policy_expired"].isoformat()
    later = {r["control"]: r["status"] for r in ok_json(
        annexa("controls", "-c", c, "--at", expired_at, "-f", "json")
    )}
    assert later["A.5.2"] == "stale"

    period = f"{h.start.isoformat()}..{h.instants['fixed'].isoformat()}"
    over = {r["control"]: r for r in ok_json(
        annexa("controls", "-c", c, "--period", period, "-f", "json")
    )}
    # The exception in this config never expires: excepted for a while, never failing.
    spent = over["A.8.24"]["period"]["seconds"]
    assert over["A.8.24"]["status"] == "pass" and "excepted" in spent and "fail" not in spent
    assert over["A.8.24"]["fail_hours"] == 0
    hist = ok_json(annexa("history", "A.8.24", "-c", c, "--period", period, "-f", "json"))[0]
    assert "excepted" in [x["status"] for x in hist["history"]]

    iso13 = {r["control"]: r for r in ok_json(
        annexa("controls", "-c", c, "--framework", "iso27001-2013", "-f", "json")
    )}
    assert len(iso13) == 114
    assert iso13["A.10.1.1"]["status"] == "pass" and iso13["A.10.1.1"]["maps_to"] == ["A.8.24"]
    assert iso13["A.6.1.1"]["status"] == "pass" and iso13["A.7.2.3"]["status"] == "manual"
    # Screening (A.6.1) has HR checks and awareness (A.6.3) KnowBe4 checks since issue
    # 16; no such source ran here.
    assert iso13["A.7.1.1"]["status"] == "no_evidence"
    assert iso13["A.7.2.2"]["status"] == "no_evidence"
    # Conservative: a requirement passes only when every control it relies on passes.
    split = iso13["A.18.2.3"]
    assert split["maps_to"] == ["A.5.36", "A.8.8"]
    assert split["status"] == "no_evidence" and split["unevidenced"] == 2
    soc2 = {r["control"]: r for r in ok_json(
        annexa("controls", "-c", c, "--framework", "soc2", "-f", "json")
    )}
    assert soc2["PI1.1"]["status"] == "not_mapped"
    # CC1.1: none of its four controls is evidenced here. Since issue 16 A.5.1 has the
    # policy connector's checks and A.6.2 the HR and policy-acknowledgement checks, and
    # no such source ran; A.5.4 and A.6.4 have no document recorded.
    cc11 = soc2["CC1.1"]
    assert cc11["iso27001_2022"]["A.5.1"] == "no_evidence"
    assert cc11["status"] == "no_evidence" and cc11["unevidenced"] == 4
    assert cc11["unevidenced_controls"] == ["A.5.1", "A.5.4", "A.6.2", "A.6.4"]
    # CC6.1: A.8.24 passes, its four other controls have no evidence.
    assert soc2["CC6.1"]["iso27001_2022"]["A.8.24"] == "pass"
    assert soc2["CC6.1"]["status"] == "no_evidence" and soc2["CC6.1"]["unevidenced"] == 4
    # CC6.4: the scope file excludes A.7.4, which then counts as not applicable.
    assert soc2["CC6.4"]["excluded_by_soa"] == ["A.7.4"]
    assert soc2["CC6.4"]["iso27001_2022"]["A.7.4"] == "not_applicable"
    assert soc2["CC6.4"]["unevidenced"] == 3
    table = annexa("controls", "-c", c, "--framework", "soc2")
    assert table.returncode == 0 and "Unevidenced" in table.stdout
    bad = annexa("controls", "-c", c, "--framework", "nist-800-53")
    assert bad.returncode == 2 and "iso27001-2013, nis2, nist-csf-2.0" in flat(bad.stderr)

    findings = ok_json(annexa("findings", "-c", c, "--period", period, "--check",
                              "aws.s3.bucket_default_encryption", "-f", "json"))
    legacy = [f for f in findings if f["resource_id"] == "legacy-export-1"]
    assert [f["status"] for f in legacy] == ["pass", "fail", "pass"]
    shown = ok_json(annexa("evidence", "show", "-c", c, "--period", period, "--type",
                           "manual.file", "-f", "json"))
    # Two documents: the cryptography policy and the ISMS policy of the history.
    assert len(shown) == 2 and all("content_base64" not in s["payload"] for s in shown)


def test_soa_export_and_verify_package(setup: tuple[Path, History, Path]) -> None:
    cfg, h, tmp = setup
    c = str(cfg)
    soa = annexa("soa", "-c", c, "-f", "csv")
    assert soa.returncode == 0, soa.stderr
    lines = soa.stdout.strip().splitlines()
    assert len(lines) == 94 and lines[0].startswith("control,title,theme,applicable")
    a74 = next(line for line in lines if line.startswith("A.7.4,"))
    assert ",no,no premises," in a74 and "excluded" in a74

    out = tmp / "audit.zip"
    period = f"{h.start.date().isoformat()}..{h.instants['fixed'].date().isoformat()}"
    exp = annexa("export", "-c", c, "--period", period, "--out", str(out), "-f", "json")
    assert exp.returncode == 0, exp.stderr
    assert json.loads(exp.stdout)[0]["files"] >= 12
    good = annexa("verify-package", str(out), "--against-db", "-c", c)
    assert good.returncode == 0 and "package OK" in good.stdout, good.stderr
    with zipfile.ZipFile(out) as zf:
        assert "Example Ltd" in zf.read("report.html").decode()
        bad = tmp / "bad.zip"
        with zipfile.ZipFile(bad, "w") as dst:
            for item in zf.infolist():
                data = zf.read(item.filename)
                if item.filename == "soa.csv":
                    data = data.replace(b"no premises", b"no prem1ses")
                dst.writestr(item, data)
    failed = annexa_proc("verify-package", str(bad))
    assert failed.returncode == 5 and "soa.csv" in flat(failed.stderr)


def test_bad_inputs_exit_2_naming_the_culprit(setup: tuple[Path, History, Path]) -> None:
    cfg, _, tmp = setup
    (tmp / "bad-exc.toml").write_text(
        '[[exception]]\ncheck = "aws.s3.bucket_default_encryption"\nresource = "*"\n'
        'reason = "r"\napproved_by = "a"\nexpires = 2099-01-01\n'
        '[[exception]]\ncheck = "aws.s3.no_such_check"\nresource = "*"\n'
        'reason = "r"\napproved_by = "a"\nexpires = 2099-01-01\n'
    )
    bad_cfg = tmp / "bad.toml"
    bad_cfg.write_text(cfg.read_text().replace("exceptions.toml", "bad-exc.toml"))
    proc = annexa_proc("decisions", "sync", "-c", str(bad_cfg))
    assert proc.returncode == 2
    assert "bad-exc.toml: exception[2]: unknown check 'aws.s3.no_such_check'" in flat(
        proc.stderr
    )
    # Read commands answer from what was recorded, and say the file has changed since.
    proc = annexa_proc("controls", "-c", str(bad_cfg), "-f", "json")
    assert proc.returncode == 0 and "changed since it was last recorded" in flat(proc.stderr)
    proc = annexa("evidence", "add", "-c", str(cfg), "--control", "A.99.1", "--file",
                  str(cfg), "--valid-until", "2099-01-01")
    assert proc.returncode == 2 and "unknown control 'A.99.1'" in flat(proc.stderr)
    proc = annexa("export", "-c", str(cfg), "--period", "2026-05-01..2026-04-01")
    assert proc.returncode == 2 and "ends before it starts" in flat(proc.stderr)
    proc = annexa("db", "grant-auditor", "reader", "-c", str(cfg))
    assert proc.returncode == 2 and "needs PostgreSQL" in flat(proc.stderr)
    proc = annexa("retention", "--keep", "3 years", "-c", str(cfg))
    assert proc.returncode == 2 and "3y" in flat(proc.stderr)


def test_evidence_add_counts_until_it_expires(setup: tuple[Path, History, Path]) -> None:
    cfg, _, tmp = setup
    doc = tmp / "access-review.xlsx"
    doc.write_bytes(b"quarterly access review Q4")
    add = annexa("evidence", "add", "-c", str(cfg), "--control", "A.5.5", "--file", str(doc),
                 "--valid-until", "2099-06-30", "--note", "Q4 review", "--by", "bob",
                 "-f", "json")
    [rec] = ok_json(add)
    assert rec["added_by"] == "bob" and rec["valid_until"].startswith("2099-07-01T00:00:00")
    now = {r["control"]: r for r in ok_json(annexa("controls", "-c", str(cfg), "-f", "json"))}
    assert now["A.5.5"]["status"] == "pass"
    assert now["A.5.5"]["counts"]["manual_evidence"] == 1
    later = {r["control"]: r["status"] for r in ok_json(
        annexa("controls", "-c", str(cfg), "--at", "2099-07-01T00:00:00Z", "-f", "json")
    )}
    assert later["A.5.5"] == "stale"
    assert annexa("verify", "-c", str(cfg)).returncode == 0
    dry = ok_json(annexa("retention", "--keep", "3y", "--dry-run", "-c", str(cfg), "-f", "json"))
    assert dry[0]["bodies_to_remove"] == 0
