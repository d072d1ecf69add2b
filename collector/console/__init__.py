"""``annexa serve``: a server-rendered web console over the evidence store.

:func:`build` wires the pieces from a validated configuration: the store (read-only
unless comments are enabled), the mapping index, the access file, and — when comments
are on — a recorder that signs each comment like any other decision.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from collector.config import Settings
from collector.console.app import Console, create_app
from collector.console.auth import Access, LoginLimiter
from collector.console.data import Context
from mappings.loader import MappingIndex


def build(
    settings: Settings,
    engine: Engine,
    index: MappingIndex,
    access: Access,
    *,
    comments: bool = False,
    oidc: Any = None,
) -> Any:
    """The ASGI app of the console."""
    record = None
    if comments:
        from collector.runner import AGENT_VERSION
        from store.comments import record_comment

        signer = settings.signer()  # an unusable key fails here, before serving

        def record(decision: Any) -> str:
            return record_comment(
                engine,
                decision,
                signer=signer,
                config_digest=settings.digest(),
                mapping_digest=index.digest,
                agent_version=AGENT_VERSION,
            )

    from collector.decisions import risk_policy
    from collector.plugins import available_plugins

    by_type: dict[str, set[str]] = {}
    for cls in available_plugins().values():
        for spec in cls.checks():
            by_type.setdefault(spec.resource_type, set()).add(spec.id)
    console = Console(
        ctx=Context(engine=engine, index=index, freshness=settings.freshness,
                    checks_by_type=by_type, risk_policy=risk_policy(settings)),
        access=access,
        record=record,
        limiter=LoginLimiter(access.login_attempts, access.login_window_seconds),
        oidc=oidc,
    )
    return create_app(console)
