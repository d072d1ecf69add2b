"""``annexa config check --connect`` says whether the AWS Config aggregator of the bulk
inventory mode answers (collector/configcheck.py, the function the command calls),
against moto plus the ``SelectAggregateResourceConfig`` fake of tests/aws_config_fake.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

from collector.config import ConnectorConfig, LoadedConnector
from collector.configcheck import connect_lines
from connectors.aws import AwsConnector, AwsOptions
from tests.aws_config_fake import ConfigSelectFake, config_select_fake


@pytest.fixture
def fake(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConfigSelectFake]:
    import os

    with config_select_fake(os.environ["AWS_ENDPOINT_URL_CONFIG_SERVICE"]) as f:
        monkeypatch.setenv("AWS_ENDPOINT_URL_CONFIG_SERVICE", f.url)
        monkeypatch.setenv("NO_PROXY", f"{os.environ['NO_PROXY']},{f.url.split('//')[1]}")
        yield f


def loaded(**options: object) -> LoadedConnector:
    cfg = ConnectorConfig(type="aws", name="prod", options=dict(options))
    return LoadedConnector(cfg, AwsConnector, AwsOptions.model_validate(cfg.options))


def aggregator_line(lines: list) -> object:
    found = [x for x in lines if x.what == "config:SelectAggregateResourceConfig"]
    assert len(found) == 1, lines
    return found[0]


def status_line(lines: list) -> object:
    found = [x for x in lines
             if x.what == "config:DescribeConfigurationAggregatorSourcesStatus"]
    assert len(found) == 1, lines
    return found[0]


def test_connect_reports_the_aggregator(aws_env: str, fake: ConfigSelectFake) -> None:
    boto3.client("s3", endpoint_url=aws_env).create_bucket(Bucket="probe-bucket")
    boto3.client("config", region_name="eu-west-1", endpoint_url=aws_env) \
        .put_configuration_aggregator(
            ConfigurationAggregatorName="org-wide",
            AccountAggregationSources=[{"AccountIds": ["123456789012"],
                                        "AllAwsRegions": True}])
    line = aggregator_line(connect_lines(loaded(
        inventory="config_aggregator", config_aggregator_name="org-wide",
        config_aggregator_region="eu-west-1")))
    assert line.ok, line
    assert line.detail == "aggregator org-wide in eu-west-1 answers (results)"
    assert [q.limit for q in fake.requests] == [1]
    status = status_line(connect_lines(loaded(
        inventory="config_aggregator", config_aggregator_name="org-wide",
        config_aggregator_region="eu-west-1")))
    assert status.ok and status.detail == (
        "aggregator org-wide in eu-west-1 reports its sync status (sources)")
    assert [q.limit for q in fake.status_requests] == [1, 1]

    # Without config:DescribeConfigurationAggregatorSourcesStatus: said, with the effect.
    fake.deny_status = True
    status = status_line(connect_lines(loaded(
        inventory="config_aggregator", config_aggregator_name="org-wide",
        config_aggregator_region="eu-west-1")))
    assert not status.ok and status.detail == (
        "aggregator org-wide in eu-west-1 source status unavailable: "
        "DescribeConfigurationAggregatorSourcesStatus: AccessDeniedException (HTTP 400) "
        "(the collection will read every resource directly)")
    fake.deny_status = False

    # Not in the home region (us-east-1): missing there, and said so.
    line = aggregator_line(connect_lines(loaded(
        inventory="config_aggregator", config_aggregator_name="org-wide")))
    assert not line.ok
    assert line.detail == (
        "aggregator org-wide in us-east-1 unavailable: SelectAggregateResourceConfig: "
        "NoSuchConfigurationAggregatorException (HTTP 400) (the collection will read "
        "every resource directly)")


def test_no_aggregator_line_in_direct_mode(aws_env: str, fake: ConfigSelectFake) -> None:
    lines = connect_lines(loaded())
    assert lines and all(x.what != "config:SelectAggregateResourceConfig" for x in lines)
    assert all(x.what != "config:DescribeConfigurationAggregatorSourcesStatus" for x in lines)
    assert fake.requests == [] and fake.status_requests == []
