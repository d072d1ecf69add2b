"""Benchmark: the Intune and Jamf Pro connectors against fakes of N devices.

    python benchmarks/devices.py [--devices 10000 100000] [--connectors intune,jamf]
                                 [--throttle 20]

The parent process serves the fakes of tests/device_fakes.py on 127.0.0.1 (devices are
generated from their index, so the fake holds none; ``--throttle`` answers of the
listing are ``429 Retry-After: 0``) and runs every (connector, N) collection in its own
child process, so the peak RSS reported (``VmHWM``) is the connector's alone. The child
does what the run engine does with the records — every evidence judged by the
connector's checks — and keeps nothing.

Figures per run: devices/s, requests made vs the minimum possible (Intune: one per page
of 999 devices + one ``windowsProtectionState`` per Windows device, a quarter of the
fleet here, + one for the compliance policies; Jamf: one token + one per page of 500
computers; the difference must be exactly the throttled answers retried), and peak
RSS. Baseline in the same run: the smallest N; the target is peak RSS at the largest N
within 1.2x of it.

Measured on the project's 2-core machine under the load of 8 parallel sessions
(2026-12-05, 20 throttled answers per run):

    connector  devices  seconds devices/s  requests  minimum  ratio  peak RSS MB  vs base
    intune       10000    20.08       498      2523     2512  1.004         59.3    1.00x
    intune      100000   198.44       504     25122    25102  1.001         68.4    1.15x
    jamf         10000     8.27      1210        41       21  1.952         68.3    1.00x
    jamf        100000    69.96      1429       221      201  1.100         76.5    1.12x

Every request beyond the minimum is one of the 20 throttled answers retried (the ratio
at 10,000 Jamf computers looks large only because the minimum is 21 requests). Intune's
time is the per-device Defender reads (8 in parallel); the listing alone is 101
requests, the compliance policies one more. Memory: ids already yielded are kept as
64-bit digests for de-duplication (:class:`connectors.devices.SeenIds`, about 6 MB at
100,000), the rest is flat.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import measure  # noqa: E402 - after the path fix

TARGET_RSS_RATIO = 1.2
INTUNE_PAGE = 999
DEVICE_TYPES = ("intune.device.managed", "jamf.computer.inventory")
JAMF_PAGE = 500


def _intune_device(now: datetime) -> Any:
    from tests.device_fakes import intune_device

    def make(i: int) -> dict[str, Any]:
        if i % 4 == 0:
            return intune_device(i, now)
        if i % 4 == 1:
            return intune_device(i, now, os="macOS", version="15.7.2")
        if i % 4 == 2:
            return intune_device(i, now, os="iOS", version="18.6", jailbroken="False")
        return intune_device(i, now, os="Android", version="15", jailbroken="False")

    return make


def child(args: argparse.Namespace) -> dict[str, Any]:
    kind, url = args.child, args.url
    http = measure.child_http(timeout=60)
    from azure.core.credentials import AccessToken

    from tests.device_fakes import GRAPH_TOKEN, JAMF_PASSWORD, JAMF_USER

    conn: Any
    if kind == "intune":
        from connectors.intune import IntuneConnector, IntuneOptions

        class Static:
            def get_token(self, *scopes: str, **kw: Any) -> AccessToken:
                return AccessToken(GRAPH_TOKEN, int(time.time()) + 3600)

        opts = IntuneOptions(
            tenant_id="bench.example", auth="managed_identity", graph_url=url, http=http
        )
        conn = IntuneConnector("bench-intune", opts, credential=Static())
    else:
        from connectors.jamf import JamfConnector, JamfOptions

        os.environ["BENCH_JAMF_PASSWORD"] = JAMF_PASSWORD
        conn = JamfConnector(
            "bench-jamf",
            JamfOptions(
                url=url,
                auth="basic",
                username=JAMF_USER,
                password={"env": "BENCH_JAMF_PASSWORD"},
                page_size=JAMF_PAGE,
                http=http,
            ),
        )
    # Devices only: not the tenant's policy record.
    return measure.tally_stream(conn, "devices", DEVICE_TYPES)


def run_one(args: argparse.Namespace, kind: str, n: int) -> dict[str, Any]:
    from tests.device_fakes import FakeIntune, FakeJamf, jamf_computer

    now = datetime.now(UTC)
    fake: Any
    if kind == "intune":
        fake = FakeIntune(n, _intune_device(now), page_cap=INTUNE_PAGE)
        listing = "/v1.0/deviceManagement/managedDevices"
        minimum = math.ceil(n / INTUNE_PAGE) + math.ceil(n / 4) + 1  # + the policies
    else:
        fake = FakeJamf(n, lambda i: jamf_computer(i, now))
        listing = "/api/v1/computers-inventory"
        minimum = 1 + math.ceil(n / JAMF_PAGE)
    # Every other listing request answers 429 until ``--throttle`` of them were sent.
    for _ in range(args.throttle):
        fake.faults[listing] += [(429, {"Retry-After": "0"}, "{}"), (0, {}, "")]
    with fake:
        result = measure.run_child(__file__, f"{kind} N={n}", kind, "--url", fake.url)
        requests, throttled = len(fake.requests), fake.faults_served
    result.update(connector=kind, n=n, requests=requests, minimum_requests=minimum,
                  throttled=throttled)
    return result


def main() -> None:
    ap = measure.stream_parser(__doc__, "devices", [10000, 100000], ["intune", "jamf"])
    ap.add_argument("--throttle", type=int, default=20, help="429 answers per run")
    measure.stream_main(ap, "devices", TARGET_RSS_RATIO, child, run_one)

if __name__ == "__main__":
    main()
