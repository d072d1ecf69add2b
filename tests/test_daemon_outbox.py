"""At-least-once notifications with real ``annexa daemon`` processes on PostgreSQL: a
notifier killed between deciding a notification and delivering it delivers it exactly
once after restart, and two replicas never both deliver it."""

from __future__ import annotations

import json
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlalchemy import select

from store.engine import make_engine
from store.schema_daemon import control_states, notification_outbox
from tests import daemon_fixtures as fx
from tests.daemon_fixtures import DaemonProcess, free_port, paced, wait_for, write_config

daemons = fx.daemons
plugin_path = fx.plugin_path


class Hook:
    """A webhook receiver on a fixed port, started only when the test says so."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", 0))
                outer.bodies.append(json.loads(self.rfile.read(n)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_notifier_killed_before_delivering_delivers_exactly_once_after_restart(
    postgres_url: str, plugin_path: Path, daemons: list, tmp_path: Path
) -> None:
    hook_port = free_port()  # nothing listens there yet: deliveries are refused
    mfa = tmp_path / "mfa"
    mfa.write_text("pass")

    def config(d: str) -> Path:
        return write_config(
            tmp_path / d / "annexa.toml",
            postgres_url,
            connectors=[
                paced("every 2s", records=1, mfa_file=str(mfa))
            ],
            notifications=(
                "[daemon.notifications]\n"
                'delivery_lease = "3s"\nmax_attempts = 2\nevaluate_every = "1s"\n'
                "[[daemon.notifications.webhooks]]\n"
                f'url = "http://127.0.0.1:{hook_port}/hook"\n'
            ),
        )

    engine = make_engine(postgres_url)

    def state() -> str | None:
        with engine.connect() as conn:
            return conn.execute(
                select(control_states.c.status).where(control_states.c.control == "A.8.5")
            ).scalar()

    def rows() -> list:
        with engine.connect() as conn:
            return conn.execute(select(notification_outbox)).all()

    first = DaemonProcess(config("a"), plugin_path, name="a")
    daemons.append(first)
    first.wait_ready()
    wait_for(lambda: state() == "pass", 30, "the baseline")
    mfa.write_text("fail")
    wait_for(lambda: state() == "fail", 30, "A.8.5 to fail")
    # Decided (the row is in the outbox) and tried, not delivered.
    wait_for(lambda: any(r.attempts >= 1 for r in rows()), 30, "a delivery attempt")
    first.proc.kill()
    first.wait(10)
    [row] = rows()
    assert row.sent_at is None and row.control == "A.8.5"

    hook = Hook(hook_port)
    try:
        replicas = [DaemonProcess(config(n), plugin_path, name=n) for n in ("b", "c")]
        daemons.extend(replicas)
        for d in replicas:
            d.wait_ready()
        wait_for(lambda: all(r.sent_at is not None for r in rows()), 60, "the delivery")
        # Give both replicas time to (wrongly) deliver again before looking.
        wait_for(lambda: sum("notification sent" in d.logs() for d in replicas) >= 1, 10, "the log")
        for d in replicas:
            d.signal(signal.SIGTERM)
        for d in replicas:
            assert d.wait(30) == 0
    finally:
        hook.close()
    assert len(hook.bodies) == 1, hook.bodies
    text = hook.bodies[0]["text"]
    assert "A.8.5" in text and "FAILING (was pass)" in text and "mfa: true → false" in text
    [row] = rows()
    # Leased twice: by the killed replica (refused), then by the one that delivered.
    assert row.sent_at is not None and row.attempts >= 2
    engine.dispose()
