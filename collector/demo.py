"""``annexa demo``: a simulated AWS estate served by moto on 127.0.0.1, collected for real.

Nothing here is a shortcut: boto3 talks HTTP to moto's server, the AWS connector runs
as configured by a user, and the store is the same SQLite file ``annexa collect`` uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from collector.config import AnnexaConfig, ConnectorConfig, Settings
from collector.output import OutputFormat, render

DEMO_REGIONS = ["us-east-1", "eu-west-1"]
DEMO_NOT_INSTALLED = (
    "annexa demo needs the demo estates (distribution annexa-demo, with moto): "
    "from a clone of the repository, pip install -e ./demo"
)


def demo_seeder() -> Callable[[str], dict[str, Any]]:
    """The demo estate's seeding function, or a clear exit when the demo distribution
    (``annexa-demo`` from demo/: the package annexa_demo and the moto it drives) is not
    installed."""
    try:
        import moto  # noqa: F401  (the estate edits moto's state: it must be there)

        from annexa_demo.aws.estate import seed_demo_estate
    except ImportError:
        raise SystemExit(DEMO_NOT_INSTALLED) from None
    return seed_demo_estate


@contextmanager
def moto_estate() -> Iterator[str]:
    """Start moto's server on a free loopback port; yield its URL with the env pointing at it."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        raise SystemExit(DEMO_NOT_INSTALLED) from None
    saved = dict(os.environ)
    os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": DEMO_REGIONS[0],
        }
    )
    for var in ("AWS_PROFILE",):
        os.environ.pop(var, None)
    try:
        yield url
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)


def demo_settings(db: Path) -> Settings:
    from collector.config import LoadedConnector
    from core.connector import load_connector

    model = AnnexaConfig(
        database={"url": f"sqlite:///{db}"},
        connectors=[
            ConnectorConfig(type="aws", name="demo-aws", options={"regions": DEMO_REGIONS})
        ],
    )
    settings = Settings(model, None)
    cls = load_connector("aws")
    settings.connectors = [
        LoadedConnector(c, cls, cls.Options.model_validate(c.options)) for c in model.connectors
    ]
    return settings


def run_demo(db: Path, fmt: OutputFormat) -> int:
    from collector.clikit import _engine, _index
    from collector.interrupts import Interrupts
    from collector.logs import configure_logging
    from collector.runner import recover, run_connector
    from store.status import control_statuses

    seed_demo_estate = demo_seeder()  # before anything is written
    console = Console(stderr=True)
    configure_logging("console", "warning")
    os.environ.pop("ANNEXA_DATABASE_URL", None)
    settings = demo_settings(db)
    index = _index(settings)
    engine = _engine(settings, migrate=True)
    for line in recover(settings, engine):
        console.print(f"recovered: {line}", highlight=False, markup=False)
    with moto_estate() as url, Interrupts("the demo collection") as stop:
        console.print(f"simulated AWS estate on {url} (moto); collecting into {db} …")
        seed_demo_estate(url)
        summary = run_connector(
            settings, settings.connectors[0], engine, index, cancel_event=stop.cancel_event
        )
    console.print(
        f"run {summary.run_id}: {summary.status}, "
        f"{summary.counts['evidence_seen']} evidence items, "
        f"{summary.counts['findings_seen']} findings, digest {summary.digest[:16]}"
    )
    if stop.interrupted:
        console.print(
            f"interrupted ({stop.name}): run {summary.run_id} sealed aborted; everything "
            "read before the interrupt is stored",
            highlight=False,
            markup=False,
        )
        return stop.exit_code
    rows = []
    for c in control_statuses(engine, index, None, settings.freshness):
        r = c.as_dict()
        r["summary"] = " ".join(f"{k}={v}" for k, v in c.counts.items())
        r["resources"] = c.failing[:4] + (
            [f"… +{len(c.failing) - 4} more"] if len(c.failing) > 4 else []
        )
        rows.append(r)
    render(
        rows,
        [
            ("control", "Control"),
            ("title", "Title"),
            ("status", "Status"),
            ("summary", "Findings"),
            ("resources", "Failing resources"),
        ],
        fmt,
        title="Annex A controls (demo estate)",
    )
    console.print(
        "next: `annexa findings --status fail`, `annexa evidence show --resource <id>`, "
        f"`annexa verify` (database: {db})"
    )
    return 0
