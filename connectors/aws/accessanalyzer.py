"""IAM Access Analyzer: is an external-access analyzer active in each region.

Regional units (service ``accessanalyzer``): ``ListAnalyzers`` page by page. Resource
type ``aws.accessanalyzer.analyzers`` (id = region): ``{"analyzers": [...]}`` without
``lastResourceAnalyzed*`` (they move with every analysis). Unused-access analyzers are
kept but do not count: only ``ACCOUNT`` / ``ORGANIZATION`` analyzers report resources
shared outside the zone of trust.

moto has no Access Analyzer; tests and ``annexa demo`` use a local fake
(:mod:`annexa_demo.aws.fakes`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import paginate, without
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import require
from core.checks import Verdict, check, failed, passed
from core.records import Evidence

SERVICE = "accessanalyzer"
ANALYZERS = "aws.accessanalyzer.analyzers"

ACTIONS: dict[str, str | None] = {
    "accessanalyzer:ListAnalyzers": "access-analyzer:ListAnalyzers",
}

EXTERNAL_ACCESS = ("ACCOUNT", "ORGANIZATION")
_VOLATILE = ("lastResourceAnalyzed", "lastResourceAnalyzedAt")


def read(account: Account, region: str) -> Iterator[Evidence]:
    client = account.client("accessanalyzer", region)
    analyzers = [without(a, _VOLATILE) for a in paginate(client, "list_analyzers", "analyzers")]
    yield account.evidence(ANALYZERS, region, region, {"analyzers": analyzers})


READERS = (ReaderSpec(SERVICE, read, regional=True),)


@check("aws.accessanalyzer.enabled")
def enabled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    analyzers = require(payload, "analyzers")
    active = [
        a for a in analyzers if a.get("type") in EXTERNAL_ACCESS and a.get("status") == "ACTIVE"
    ]
    if active:
        return passed("Active analyzer: " + ", ".join(f"{a.get('name')} ({a.get('type')})"
                                                      for a in active))
    if analyzers:
        states = ", ".join(f"{a.get('name')} {a.get('type')} {a.get('status')}"
                           for a in analyzers)
        return failed(f"No active external-access analyzer ({states})")
    return failed("No Access Analyzer analyzer exists in the region")
