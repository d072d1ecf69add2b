"""The connector of docs/writing-a-connector.md, defined only under tests/: a small,
complete connector for a fictional "Acme Directory" REST API.

It exists so that the guide's code is real (tests/test_example_connector.py runs it
through the product's engine against a fake on tests/fakehttp.py) and so that a
connector outside ``connectors/`` is proven to need no core change. A real connector
lives in ``connectors/<source>/`` and registers its checks in the shared
``core.checks.REGISTRY`` (leave out ``registry=``); this one keeps its checks in a
registry of its own so that they never show in ``annexa checks`` or the docs.

The fictional API: ``GET /api/v1/users?limit=N&cursor=C`` with ``Authorization: Bearer
<token>`` answers ``{"users": [...], "next_cursor": "..."}`` (empty cursor on the last
page); each user has ``id``, ``email``, ``kind`` (``human``/``service``),
``mfa_enrolled`` and ``last_login``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field

from connectors.http import HttpClient, HttpOptions, token_auth
from connectors.kit import GLOBAL, require, run_unit
from core.checks import CheckRegistry, Verdict, check, failed, passed
from core.connector import (
    CollectContext,
    Connector,
    ConnectorOptions,
    SecretRef,
    SecretUnavailableError,
)
from core.records import Coverage, Evidence, Record

EXAMPLE_REGISTRY = CheckRegistry()

# -- checks: pure functions of one payload, with their metadata beside them


@check(
    id="example.user.mfa_enrolled",
    title="Directory user has MFA enrolled",
    severity="high",
    resource_type="example.user.account",
    rationale="A password alone is phished or guessed; a second factor stops most "
    "account takeovers.",
    remediation="Enrol the user in MFA in the Acme Directory admin console.",
    parameters={"exempt_service_accounts": False},
    registry=EXAMPLE_REGISTRY,
)
def mfa_enrolled(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    # require(): a missing field raises, which the engine records as ``error`` —
    # a control is never passed by absence of evidence.
    email = require(payload, "email")
    if payload.get("kind") == "service" and params["exempt_service_accounts"]:
        return passed(f"{email} is a service account (exempt by configuration)")
    if require(payload, "mfa_enrolled"):
        return passed(f"{email} has MFA enrolled")
    return failed(f"{email} has no MFA enrolled")


# -- options: validated by pydantic when the config is loaded


class ExampleOptions(ConnectorOptions):
    base_url: str = Field(description="https://<tenant>.acme-directory.example")
    api_token: SecretRef = Field(description="read-only API token, by reference")
    page_size: int = Field(100, ge=1, le=500, description="users per page")
    http: HttpOptions = Field(default_factory=HttpOptions)


# -- the connector: get → transform → load, one unit per service


#: What the checks and an auditor need of a user; volatile fields (etags) stay out.
USER_FIELDS = ("id", "email", "kind", "mfa_enrolled", "last_login")


def user_payload(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Transform: keep :data:`USER_FIELDS` *that the source sent*. A field the source
    left out stays out (never ``None`` or a default), so the check raises on it and the
    verdict is ``error``, not a ``fail`` or ``pass`` invented by the transform."""
    return {k: raw[k] for k in USER_FIELDS if k in raw}


class ExampleConnector(Connector):
    """Users of one Acme Directory tenant (unit ``<host>/global/user``)."""

    type = "example"
    prefix = "example"
    Options: ClassVar[type[ConnectorOptions]] = ExampleOptions
    options: ExampleOptions
    # Checks default to those of ``check_registry`` whose id starts with ``prefix.``;
    # the example keeps its checks out of the product's registry.
    check_registry = EXAMPLE_REGISTRY

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        opts = self.options
        scope = urlsplit(opts.base_url).netloc
        try:
            token = opts.api_token.get()
        except SecretUnavailableError as exc:
            # Nothing can be read: one unit error for the whole scope (service "*").
            yield Coverage(scope, GLOBAL, "*", ok=False, error=str(exc))
            return
        with HttpClient(
            opts.base_url,
            auth=token_auth("Bearer", token),
            options=opts.http,
            cancel_event=ctx.cancel_event,
        ) as client:
            yield from run_unit(
                scope, "user", lambda: self._users(client, scope), ctx.cancelled,
                source=self.type,
            )

    def _users(self, client: HttpClient, scope: str) -> Iterator[Evidence]:
        """Get every page (the client retries 429/5xx and guards against page loops),
        transform each user, load it as one Evidence."""
        for raw in client.paginate_cursor(
            "/api/v1/users",
            params={"limit": self.options.page_size},
            items_key="users",
            cursor_param="cursor",
            cursor_key="next_cursor",
            last_key=None,
        ):
            yield Evidence(scope, GLOBAL, "example.user.account", raw["id"], user_payload(raw))
