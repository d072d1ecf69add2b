"""Reproducible samples: same seed, same items; recorded; in the package; verified.

The store is filled through the real run engine with the scripted connector plugin;
``annexa sample`` / ``samples`` / ``export`` / ``verify-package`` run as the CLI
(Click's runner, in process). The draw is recomputed here with hashlib alone, as an
auditor without Annexa would.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.runner import run_connector
from mappings.loader import load_mappings
from store.samples import AUTO_SIZES, SampleError, auto_size, draw, population_digest
from tests.cli_runner import annexa
from tests.fakes import FakeConnector, estate, fake_index, fake_settings
from tests.forgery import rezip, unzip


@pytest.fixture
def store(tmp_path: Path, db_url: str, engine) -> Path:
    index = fake_index(tmp_path / "maps")
    disks = {f"disk-{i:02d}": i % 3 != 0 for i in range(30)}
    FakeConnector.script = estate(disks, {"alice": True})
    settings = fake_settings(db_url)
    run_connector(settings, settings.connectors[0], engine, index)
    cfg = tmp_path / "annexa.toml"
    cfg.write_text(f'[database]\nurl = "{db_url}"\n[mappings]\npaths = ["maps"]\n'
                   '[log]\nformat = "json"\n')
    return cfg


def period() -> str:
    today = datetime.now(UTC).date()
    return f"{today - timedelta(days=1)}..{today + timedelta(days=1)}"


def draw_json(cfg: Path, seed: str, size: str = "5") -> list[str]:
    code, out, err = annexa("sample", "--population", "findings", "--check",
                            "fake.disk.encrypted", "--period", period(), "--size", size,
                            "--seed", seed, "-c", str(cfg), "-f", "json")
    assert code == 0, err
    return [r["item_id"] for r in json.loads(out)]


def test_same_seed_same_items_other_seed_other_items(store):
    a = draw_json(store, "audit-2026")
    b = draw_json(store, "audit-2026")
    c = draw_json(store, "another-seed")
    assert a == b and len(a) == 5 and a != c
    code, out, _ = annexa("samples", "-c", str(store), "-f", "json")
    recorded = json.loads(out)
    assert code == 0 and [s["seed"] for s in recorded] == ["audit-2026", "another-seed"]
    assert all(s["population_size"] == 30 and s["size"] == 5 for s in recorded)


def test_the_draw_can_be_recomputed_without_annexa(store, tmp_path):
    out_dir = tmp_path / "sample"
    code, _, err = annexa("sample", "--population", "findings", "--check",
                          "fake.disk.encrypted", "--period", period(), "--size", "4",
                          "--seed", "s1", "--out", str(out_dir), "-c", str(store))
    assert code == 0, err
    recorded = json.loads((out_dir / "sample.json").read_text())
    lines = (out_dir / "population.csv").read_text().splitlines()[1:]
    ids = [line.split(",")[0] for line in lines]
    digest = hashlib.sha256("".join(i + "\n" for i in sorted(ids)).encode()).hexdigest()
    assert digest == recorded["population_digest"]
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"s1\n{i}".encode()).hexdigest())
    assert ranked[:4] == recorded["items"]
    assert (out_dir / "sample.csv").read_text().count("\n") == 5


def test_samples_travel_in_the_package_and_verify(store, tmp_path, engine):
    from exports.package import build_package
    from mappings.soa import default_scope

    draw_json(store, "pkg-seed")
    pkg = tmp_path / "audit.zip"
    index = load_mappings([tmp_path / "maps"])
    today = datetime.now(UTC)
    build_package(
        engine, index, start=today - timedelta(days=1), end=today + timedelta(days=1),
        out=pkg, freshness=timedelta(days=7), exceptions=[],
        scope=default_scope(index.catalog), agent_version="t",
    )
    with zipfile.ZipFile(pkg) as zf:
        names = zf.namelist()
    sample_files = [n for n in names if n.startswith("samples/")]
    assert len(sample_files) == 2 and any(n.endswith("population.csv") for n in sample_files)
    from exports.verify import verify_package

    res = verify_package(pkg)
    assert res.ok and res.samples_verified == 1, res.problems
    # An altered population (one item dropped, manifest rehashed) or items fail.
    for target in ("population.csv", "sample.json"):
        bad = tmp_path / f"bad-{target}.zip"
        _rewrite(pkg, bad, target)
        res = verify_package(bad)
        assert not res.ok, target
        assert any("population" in p.reason or "draw" in p.reason for p in res.problems)


def _rewrite(src: Path, dst: Path, target: str) -> None:
    files = unzip(src)
    name = next(n for n in files if n.endswith(target))
    if target == "population.csv":
        lines = files[name].decode().splitlines(keepends=True)
        files[name] = "".join(lines[:-1]).encode()
    else:
        s = json.loads(files[name])
        s["items"] = list(reversed(s["items"]))
        files[name] = json.dumps(s).encode()
    rezip(files, dst)


def test_bad_requests_exit_2(store):
    for args, msg in (
        (["--size", "auto"], "needs --frequency"),
        (["--size", "500"], "larger than the population"),
        (["--size", "auto", "--frequency", "hourly"], "unknown frequency"),
    ):
        code, _, err = annexa("sample", "--population", "findings", "--period", period(),
                              *args, "-c", str(store))
        assert code == 2 and msg in " ".join(err.split()), (args, err)
    code, _, err = annexa("sample", "--population", "tickets", "--period", period(),
                          "-c", str(store))
    assert code == 2 and "process:<kind>" in err


@pytest.mark.parametrize("frequency", sorted(AUTO_SIZES))
def test_auto_sizes_follow_the_documented_table(frequency):
    assert auto_size(frequency, 1000) == AUTO_SIZES[frequency]
    assert auto_size(frequency, 1) == 1
    with pytest.raises(SampleError):
        auto_size("hourly", 10)


def test_draw_is_a_function_of_seed_and_population_only():
    ids = [f"item-{i}" for i in range(50)]
    assert draw(ids, "x", 7) == draw(list(reversed(ids)), "x", 7)
    assert population_digest(ids) == population_digest(list(reversed(ids)))
    with pytest.raises(SampleError):
        draw([*ids, "item-1"], "x", 3)
