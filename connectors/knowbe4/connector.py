"""The KnowBe4 connector: security awareness training and phishing tests (Reporting API).

Configuration (``[[connectors]] type = "knowbe4"``)::

    [connectors.options]
    url = "https://us.api.knowbe4.com"        # eu./ca./uk./de.api.knowbe4.com by region
    token = { env = "KNOWBE4_REPORTING_TOKEN" }   # Reporting API key, sent as Bearer
    phishing_lookback_days = 365              # tests started earlier are not read
    pseudonymise = false                      # HMAC-SHA256 e-mails, names dropped
    # pseudonymise_key = { env = "ANNEXA_PSEUDONYM_KEY" }   # the key the IdPs use too

Units (service = second segment of the resource types), all in region ``global`` of
scope = the API host: ``training`` (``knowbe4.training.campaign``), ``user``
(``knowbe4.user.training``: users with their enrolments) and ``phishing``
(``knowbe4.phishing.failure``, ``knowbe4.phishing.test``). Enrolments are read once and
serve both the user unit and the remedial-training check of the phishing unit; when
they cannot be read the user unit is ``error`` and each failure's remedial check is
``error`` too, never a guess.

The Reporting API allows 4 requests a second, 50 a minute and 2,000 a day (plus one per
licensed seat); it answers 429 with ``Retry-After`` beyond that, which the shared HTTP
layer honours. ``page_size`` defaults to the API's maximum (500) to spend the fewest
requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from connectors.http import HttpClient, HttpOptions, SourceError, token_auth
from connectors.identityshared import refused
from connectors.kit import (
    GLOBAL,
    PseudonymiseOptions,
    Pseudonymiser,
    SourceURL,
    run_client,
    run_unit,
)
from connectors.knowbe4 import phishing, training
from core.connector import (
    CollectContext,
    Connector,
    ConnectorOptions,
    SecretRef,
    SecretUnavailableError,
)
from core.records import Coverage, Record

PREFIX = "knowbe4"
SERVICES = ("training", "user", "phishing")


class KnowBe4Options(PseudonymiseOptions):
    url: SourceURL = Field(
        "https://us.api.knowbe4.com", description="Reporting API root of the account's region"
    )
    token: SecretRef = Field(description="Reporting API key (Account Settings → API)")
    page_size: int = Field(500, ge=1, le=500, description="items per page (API maximum 500)")
    phishing_lookback_days: int = Field(
        365, ge=1, description="phishing tests started within this many days are read"
    )
    failure_events: list[str] = Field(
        default_factory=lambda: list(phishing.DEFAULT_FAILURE_EVENTS),
        min_length=1,
        description="recipient timestamps that count as failing a phishing test",
    )
    http: HttpOptions = Field(default_factory=HttpOptions)


    @field_validator("failure_events")
    @classmethod
    def _events(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(phishing.DEFAULT_FAILURE_EVENTS))
        if unknown:
            raise ValueError(
                f"unknown failure events {unknown} (known: "
                f"{', '.join(phishing.DEFAULT_FAILURE_EVENTS)})"
            )
        return v


class KnowBe4Connector(Connector):
    type = "knowbe4"
    prefix = PREFIX
    Options: ClassVar[type[ConnectorOptions]] = KnowBe4Options

    options: KnowBe4Options

    @property
    def scope(self) -> str:
        return urlsplit(self.options.url).netloc

    def collect(self, ctx: CollectContext) -> Iterator[Record]:
        opts = self.options
        scope = self.scope
        try:
            auth = token_auth("Bearer", opts.token.get())
            # Unlike the identity sources (the key alone enables it), KnowBe4 has always
            # needed pseudonymise = true as well; kept so (behaviour unchanged).
            pseudo = Pseudonymiser(
                opts.pseudonymise_key.get() if opts.pseudonymise and opts.pseudonymise_key else None
            )
        except SecretUnavailableError as exc:
            yield from refused(scope, SERVICES, str(exc))
            return
        with run_client(opts.url, auth, opts.http, ctx) as http:
            yield from self._collect(ctx, http, scope, pseudo)

    def _collect(
        self, ctx: CollectContext, http: HttpClient, scope: str, pseudo: Pseudonymiser
    ) -> Iterator[Record]:
        opts = self.options

        def unit(service: str, read: Any) -> Iterator[Record]:
            return run_unit(scope, service, read, ctx.cancelled, source=PREFIX)

        yield from unit("training", lambda: training.read_campaigns(http, scope, opts.page_size))
        if ctx.cancelled():
            return
        enrolments: dict[str, list[dict[str, Any]]] | None = None
        error: str | None = None
        try:
            enrolments = training.read_enrolments(http, opts.page_size)
        except SourceError as exc:
            error = f"training enrollments could not be read: {exc}"
        if ctx.cancelled():
            return
        if enrolments is None:
            yield Coverage(scope, GLOBAL, "user", ok=False, error=error)
        else:
            yield from unit(
                "user",
                lambda: training.read_users(http, scope, enrolments, error, opts.page_size, pseudo),
            )
        if ctx.cancelled():
            return
        yield from unit(
            "phishing",
            lambda: phishing.read_tests(
                http,
                scope,
                enrolments=enrolments,
                enrolment_error=error,
                lookback_days=opts.phishing_lookback_days,
                failure_events=opts.failure_events,
                page_size=opts.page_size,
                cancelled=ctx.cancelled,
                pseudo=pseudo,
            ),
        )
