"""The daemon refuses to start, as ``collect`` does, when a scheduled connector's secret
does not resolve — and names the reference, never a value — writing nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from collector.daemon import Daemon, DaemonError
from mappings.loader import load_mappings
from store.engine import make_engine
from store.migrate import upgrade
from store.schema import runs
from tests.daemon_fixtures import paced_settings
from tests.fakes import write_fake_mapping


def _daemon(tmp_path: Path, token: dict[str, str]) -> Daemon:
    maps = write_fake_mapping(tmp_path / "maps")
    url = f"sqlite:///{tmp_path / 'a.db'}"
    settings = paced_settings(url, tmp_path / "spool", options={"records": 2, "token": token},
                              config_path=tmp_path / "annexa.toml")
    engine = make_engine(url)
    upgrade(engine)
    return Daemon(settings, load_mappings([maps]), engine)


def test_an_unresolved_secret_stops_the_daemon_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANNEXA_TEST_MISSING_TOKEN", raising=False)
    secret_file = tmp_path / "absent-token"
    for token, named in (
        ({"env": "ANNEXA_TEST_MISSING_TOKEN"}, "ANNEXA_TEST_MISSING_TOKEN is not set"),
        ({"file": str(secret_file)}, f"secret file {secret_file} cannot be read"),
    ):
        with pytest.raises(DaemonError) as err:
            _daemon(tmp_path, token)
        msg = str(err.value)
        assert "connectors.p1.options.token" in msg and named in msg, msg
        assert "annexa config check" in msg
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar_one() == 0


def test_a_resolving_secret_starts_and_its_value_is_not_in_the_error_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANNEXA_TEST_PRESENT_TOKEN", "present-token-0123456789")
    daemon = _daemon(tmp_path, {"env": "ANNEXA_TEST_PRESENT_TOKEN"})
    assert "p1" in daemon.connectors
