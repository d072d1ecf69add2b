"""``/metrics`` and ``/readyz`` of a real ``annexa daemon`` process, scraped over HTTP:
zero-initialised series, per-control status, database up, build info, process
metrics, missed due times; /readyz never names the database host."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

from sqlalchemy.engine import make_url

from collector.daemon.schedule import ScheduleSpec
from store.engine import make_engine
from store.leases import ensure_schedule
from store.migrate import upgrade
from tests import daemon_fixtures as fx
from tests.daemon_fixtures import DaemonProcess, TcpProxy, wait_for, write_config

daemons = fx.daemons
pg_proxy = fx.pg_proxy
plugin_path = fx.plugin_path


def _value(metrics: str, series: str) -> float | None:
    m = re.search(r"^" + re.escape(series) + r" (\S+)$", metrics, re.M)
    return float(m.group(1)) if m else None


def test_metrics_are_zero_initialised_and_tell_control_status_db_up_and_missed_slots(
    postgres_url: str, plugin_path: Path, daemons: list, pg_proxy, tmp_path: Path
) -> None:
    url = make_url(postgres_url)
    proxy: TcpProxy = pg_proxy(url.port or 5432)
    via_proxy = url.set(port=proxy.port).render_as_string(hide_password=False)
    # The schedule was due 3 h ago (a daemon was down): 3 due times are missed, the
    # latest runs at once (catch_up = latest).
    hourly = ScheduleSpec.parse("every 1h")
    engine = make_engine(postgres_url)
    upgrade(engine)
    ensure_schedule(engine, "p1", hourly.text, lambda now, _l: now - timedelta(hours=3))
    engine.dispose()
    cfg = write_config(
        tmp_path / "annexa.toml",
        via_proxy,
        connectors=[{"type": "paced", "name": "p1", "schedule": hourly.text}],
        notifications=(
            "[daemon.notifications.jira]\n"
            'url = "http://127.0.0.1:9/jira"\nproject = "SEC"\n'
            'token = { env = "JIRA_TOKEN" }\n'
        ),
    )
    d = DaemonProcess(cfg, plugin_path, env={"JIRA_TOKEN": "t"})
    daemons.append(d)
    d.wait_ready()

    def after_run() -> str | None:
        m = d.get("/metrics")[1]
        return m if _value(m, 'annexa_runs_total{connector="p1",status="succeeded"}') else None

    m = wait_for(after_run, 30, "the first run in /metrics")
    # Zero-initialised: failures and takeovers that never happened are 0, not absent.
    for series in (
        'annexa_runs_total{connector="p1",status="failed"}',
        'annexa_runs_total{connector="p1",status="aborted"}',
        'annexa_schedule_claims_total{connector="p1",takeover="true"}',
        'annexa_notifications_total{channel="jira",outcome="failed"}',
        'annexa_notifications_total{channel="webhook",outcome="sent"}',
        "annexa_reaped_runs_total",
    ):
        assert _value(m, series) == 0.0, series
    assert _value(m, 'annexa_schedule_missed_total{connector="p1"}') == 3.0
    assert _value(m, "annexa_database_up") == 1.0
    assert re.search(r'^annexa_build_info\{python="[\d.]+",version="[^"]+"\} 1\.0$', m, re.M)
    assert (_value(m, "process_resident_memory_bytes") or 0) > 10_000_000
    assert _value(m, "process_cpu_seconds_total") is not None

    # Per control: exactly one status is 1 for each control; the fake mapping's MFA
    # control passes once the run is in (its encryption control has no documented part
    # in the test mapping: "undocumented").
    def control_passes() -> str | None:
        text = d.get("/metrics")[1]
        ok = _value(text, 'annexa_control_status{control="A.8.5",status="pass"}') == 1.0
        return text if ok else None

    m = wait_for(control_passes, 30, "A.8.5 pass in /metrics")
    assert _value(m, 'annexa_control_status{control="A.8.5",status="fail"}') == 0.0
    assert _value(m, 'annexa_control_status{control="A.8.24",status="undocumented"}') == 1.0
    per_control: dict[str, float] = {}
    for control, value in re.findall(
        r'^annexa_control_status\{control="([^"]+)",status="[^"]+"\} (\S+)$', m, re.M
    ):
        per_control[control] = per_control.get(control, 0.0) + float(value)
    assert len(per_control) > 50  # the whole Annex A catalog, not only mapped controls
    assert set(per_control.values()) == {1.0}

    # Database cut: not ready, DB down in the metrics, and no host or port in /readyz.
    proxy.close()
    wait_for(lambda: d.get("/readyz")[0] == 503, 15, "/readyz to turn unready")
    body = d.get("/readyz")[1]
    assert json.loads(body)["database"].startswith("unreachable")
    assert "127.0.0.1" not in body and str(proxy.port) not in body and "5432" not in body
    wait_for(
        lambda: _value(d.get("/metrics")[1], "annexa_database_up") == 0.0,
        15,
        "annexa_database_up 0",
    )
    proxy.open()
    wait_for(
        lambda: _value(d.get("/metrics")[1], "annexa_database_up") == 1.0,
        15,
        "annexa_database_up 1",
    )
