"""One custom endpoint for every AWS service, and what an endpoint may lack or cap.

A moto server on 127.0.0.1 over a real socket (tests/aws_fixtures.py). Here the
endpoint is given the way a user gives it — ``endpoint_url`` in the connector's
options — with no ``AWS_ENDPOINT_URL``, no per-service endpoint variable and no HTTP
proxy in the environment: S3 Control must reach the endpoint's own host (botocore would
otherwise call ``<account id>.127.0.0.1``, which does not resolve).

moto lacks some APIs entirely (``NOT_IN_MOTO``): there it answers HTTP 500 or 404 with
an HTML page, which must be one ``error`` for the unit, not five retries. moto 5.2's
``ListBuckets`` with ``MaxBuckets`` returns a full page without a ``ContinuationToken``
(real S3 sends one): the listing must not stop there silently.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy import Engine, select

from annexa_demo.aws.fakes import ENDPOINT_VARIABLES
from collector.config import AnnexaConfig, ConnectorConfig, LoadedConnector, Settings
from collector.runner import run_connector
from connectors.aws import AwsConnector, AwsOptions
from connectors.aws.common import IncompleteListing, paginate
from connectors.aws.connector import SERVICES
from connectors.aws.session import ClientSettings, make_client
from core.connector import CollectContext
from core.records import Coverage, Evidence
from mappings import load_mappings
from store.engine import make_engine
from store.schema import evidence as evidence_table
from tests.aws_fixtures import FaultProxy, serve_proxy
from tests.configs import connector_table, write_config

MAIN = "123456789012"
#: Services whose listing moto 5.2 does not implement (it answers 500 or 404 with HTML):
#: the unit fails. (Other operations moto lacks — Macie jobs, conformance packs, restore
#: testing, S3 malware protection plans — are partial reads: those checks are errors,
#: their units still read the rest.)
NOT_IN_MOTO = {"accessanalyzer", "route53resolver"}
_ENDPOINT_VARS = ("AWS_ENDPOINT_URL", *ENDPOINT_VARIABLES, "HTTP_PROXY", "HTTPS_PROXY",
                  "http_proxy", "https_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture
def only_option(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """moto's URL, with no endpoint or proxy left in the environment."""
    for name in _ENDPOINT_VARS:
        monkeypatch.delenv(name, raising=False)
    return aws_env


def _client(url: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=url, region_name="us-east-1")


def test_config_with_only_endpoint_url_succeeds_through_the_cli(
    only_option: str, tmp_path: Path, db_url: str
) -> None:
    """``annexa collect`` (a subprocess) with ``endpoint_url`` as the only endpoint
    setting: every service moto implements is read, S3 Control included; the run is
    ``succeeded`` and exits 0."""
    url = only_option
    s3control = make_client(boto3.Session(region_name="us-east-1"), "s3control", "us-east-1",
                            ClientSettings(endpoint_url=url))
    s3control.put_public_access_block(
        AccountId=MAIN, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True})
    _client(url, "s3").create_bucket(Bucket="annexa-endpoint-test")
    services = sorted(set(SERVICES) - NOT_IN_MOTO)
    cfg = write_config(tmp_path / "annexa.toml", db_url, connector_table("aws", "one-endpoint", {
        "endpoint_url": url, "regions": ["us-east-1"], "services": services,
    }))
    env = {k: v for k, v in os.environ.items() if k not in _ENDPOINT_VARS}
    proc = subprocess.run([sys.executable, "-m", "collector", "collect", "--config", str(cfg),
                           "--format", "json"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    [run] = json.loads(proc.stdout)
    assert run["status"] == "succeeded" and run["errors"] == 0, run
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            types = set(conn.execute(select(evidence_table.c.resource_type)).scalars())
    finally:
        engine.dispose()
    assert "aws.s3control.account_public_access_block" in types
    assert "aws.s3.bucket" in types


def _run(db_url: str, engine: Engine, **options: Any) -> Any:
    model = AnnexaConfig(database={"url": db_url},
                         connectors=[ConnectorConfig(type="aws", name="aws-ep", options=options)])
    settings = Settings(model, None)
    cfg = model.connectors[0]
    loaded = LoadedConnector(cfg, AwsConnector, AwsOptions.model_validate(cfg.options))
    return run_connector(settings, loaded, engine, load_mappings())


@pytest.fixture
def counting_endpoint(only_option: str) -> Any:
    """A :class:`FaultProxy` used as the endpoint itself: it forwards to moto and counts."""
    proxy = FaultProxy(upstream=only_option)
    server = serve_proxy(proxy)
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()


def test_api_the_endpoint_lacks_is_one_error_asked_once(
    counting_endpoint: FaultProxy, engine: Engine, db_url: str
) -> None:
    """Every service, one region, moto behind a counting relay: each service moto lacks
    is exactly one unit error saying so, after exactly one request (no retries); every
    other unit is read."""
    summary = _run(db_url, engine, endpoint_url=counting_endpoint.url, regions=["us-east-1"],
                   max_attempts=5)
    assert summary.status == "partial"
    assert sorted(summary.errors) == sorted(
        f"{MAIN}/us-east-1/{s}: {op}: not offered by the endpoint (HTTP {status})"
        for s, op, status in [("accessanalyzer", "ListAnalyzers", 500),
                              ("route53resolver", "ListFirewallRuleGroupAssociations", 500)]
    )
    assert counting_endpoint.count(service="access-analyzer") == 1
    assert counting_endpoint.count(service="route53resolver") == 1


def test_s3control_calls_the_endpoint_host_not_an_account_subdomain(
    only_option: str,
) -> None:
    """The request line names the endpoint's host; the account goes in its header."""
    seen: list[str] = []
    session = boto3.Session(region_name="us-east-1")
    client = make_client(session, "s3control", "us-east-1",
                         ClientSettings(endpoint_url=only_option))
    client.meta.events.register("before-send", lambda request, **_: seen.append(
        f"{request.url} {request.headers.get('x-amz-account-id', b'').decode()}"))
    with pytest.raises(client.exceptions.NoSuchPublicAccessBlockConfiguration):
        client.get_public_access_block(AccountId=MAIN)
    host = only_option.removeprefix("http://")
    assert seen == [f"http://{host}/v20180820/configuration/publicAccessBlock {MAIN}"]
    # opting back in restores AWS's own form, which this endpoint cannot answer
    prefixed = make_client(session, "s3control", "us-east-1", ClientSettings(
        endpoint_url=only_option, endpoint_account_prefix=True, max_attempts=1,
        connect_timeout=1))
    with pytest.raises(Exception, match=f"{MAIN}.127.0.0.1"):
        prefixed.get_public_access_block(AccountId=MAIN)


def test_full_page_without_continuation_token_is_never_silently_truncated(
    only_option: str,
) -> None:
    """moto answers ListBuckets(MaxBuckets=2) with 2 of 3 buckets and no token."""
    s3 = _client(only_option, "s3")
    for i in range(3):
        s3.create_bucket(Bucket=f"annexa-page-{i}")
    read: list[str] = []
    with pytest.raises(IncompleteListing, match="ListBuckets: a full page of 2 items"):
        for bucket in paginate(s3, "list_buckets", "Buckets", PaginationConfig={"PageSize": 2}):
            read.append(bucket["Name"])
    assert read == ["annexa-page-0", "annexa-page-1"]  # what was read is kept
    # below the bound, the same listing is whole and raises nothing
    assert len(list(paginate(s3, "list_buckets", "Buckets",
                             PaginationConfig={"PageSize": 4}))) == 3


def test_bucket_listing_capped_at_its_page_size_is_a_unit_error_naming_the_bound(
    only_option: str,
) -> None:
    """1,001 buckets: moto returns the first 1,000 and no token. The s3 unit keeps the
    1,000 buckets read and ends in an error naming the bound, so nothing past it is
    closed by absence."""
    s3 = _client(only_option, "s3")
    for i in range(1001):
        s3.create_bucket(Bucket=f"annexa-many-{i:04d}")
    connector = AwsConnector("aws-ep", AwsOptions(endpoint_url=only_option,
                                                  regions=["us-east-1"], services=["s3"]))
    records = list(connector.collect(CollectContext(run_id="t")))
    (unit,) = [r for r in records if isinstance(r, Coverage) and r.service == "s3"]
    assert not unit.ok and unit.error == (
        "ListBuckets: a full page of 1000 items came without a continuation token; "
        "items past the first 1000 cannot be read")
    buckets = {r.resource_id for r in records if isinstance(r, Evidence)
               and r.resource_type == "aws.s3.bucket"}
    assert len(buckets) == 1000
