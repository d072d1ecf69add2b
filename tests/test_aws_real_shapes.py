"""Verdicts on the shapes real AWS answers with, where the old checks went wrong.

Each test plants or stubs one situation an AWS account really has — taken from the
API's botocore service model (``botocore/data/<service>/<version>/service-2.json``:
its enumerations and optional members) and from the scenarios a peer's test suite
(Prowler's AWS check tests) covers — and asserts the exact verdict. Every one of them
gave the opposite verdict before (a false pass or a false fail), which the moto-based
demo estate never showed.

Through a real moto server where moto serves the shape (security groups, prefix
lists, bucket policies, the account-level public access block); with botocore's
``Stubber`` on a real client where moto's answer differs from AWS's: moto reports
Config recorder status in capitals (``FAILURE``; the model's enumeration is
``Pending | Success | Failure | NotApplicable``), knows no QUIC listener protocol, and
gives read replicas the source's backup retention.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

import connectors.aws  # noqa: F401 - registers the checks
from connectors.aws import AwsConnector, AwsOptions, config, elbv2, rds
from connectors.aws.session import Account, ClientSettings, make_client
from core.checks import REGISTRY, evaluate
from core.connector import CollectContext
from core.records import Coverage, Evidence, Finding

MAIN = "123456789012"
REGION = "us-east-1"


def collect(services: list[str]) -> list[Evidence | Finding | Coverage]:
    connector = AwsConnector("shapes", AwsOptions(regions=[REGION], services=services))
    records = list(connector.collect(CollectContext(run_id="t")))
    assert all(r.ok for r in records if isinstance(r, Coverage)), records
    return records


def verdicts(records: list[Any], check_id: str) -> dict[str, str]:
    """resource id → status of ``check_id``, evaluated as the collector does."""
    spec = REGISTRY.get(check_id)
    out = {}
    for rec in records:
        if isinstance(rec, Evidence) and rec.resource_type == spec.resource_type:
            (finding,) = evaluate(rec, [spec], {})
            out[rec.resource_id] = finding.status
    return out


# --- security groups: set arithmetic ------------------------------------------------------


def _group(ec2: Any, vpc: str, name: str, rules: list[dict[str, Any]]) -> str:
    gid = ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=rules)
    return gid


def test_internet_exposure_is_judged_on_unions_not_literals(aws_env: str) -> None:
    """Rules in the DescribeSecurityGroups shape (``IpProtocol`` by name or number,
    ``IpRanges``/``Ipv6Ranges``/``PrefixListIds``): each failing group opens its port to
    the internet (:mod:`connectors.exposure`: at least a /8 of public addresses), but no
    single rule names ``0.0.0.0/0`` with that exact port."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    pl = ec2.create_managed_prefix_list(
        PrefixListName="annexa-partners", MaxEntries=5, AddressFamily="IPv4",
        Entries=[{"Cidr": "0.0.0.0/0", "Description": "everyone, by mistake"}],
    )["PrefixList"]["PrefixListId"]
    halves = [{"CidrIp": "0.0.0.0/1"}, {"CidrIp": "128.0.0.0/1"}]
    groups = {
        # SSH from two halves of IPv4, in two rules, one by protocol number
        "ssh-split": _group(ec2, vpc, "ssh-split", [
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": halves[:1]},
            {"IpProtocol": "6", "FromPort": 20, "ToPort": 25, "IpRanges": halves[1:]}]),
        # SSH through a customer managed prefix list holding 0.0.0.0/0
        "ssh-prefix-list": _group(ec2, vpc, "ssh-prefix-list", [
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
             "PrefixListIds": [{"PrefixListId": pl}]}]),
        # every public address, but the private ranges left out
        "ssh-public-only": _group(ec2, vpc, "ssh-public-only", [
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [
                {"CidrIp": c} for c in ("0.0.0.0/5", "8.0.0.0/7", "11.0.0.0/8",
                                        "12.0.0.0/6", "16.0.0.0/4", "32.0.0.0/3",
                                        "64.0.0.0/2", "128.0.0.0/1")]}]),
        # RDP over IPv6 from two halves of the address space
        "rdp-v6-split": _group(ec2, vpc, "rdp-v6-split", [
            {"IpProtocol": "tcp", "FromPort": 3389, "ToPort": 3389,
             "Ipv6Ranges": [{"CidrIpv6": "::/1"}, {"CidrIpv6": "8000::/1"}]}]),
        # every usable TCP port: 1-65535 (port 0 is not one)
        "all-from-1": _group(ec2, vpc, "all-from-1", [
            {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 65535,
             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]),
        # every port, in two rules
        "all-split": _group(ec2, vpc, "all-split", [
            {"IpProtocol": "udp", "FromPort": 0, "ToPort": 32767,
             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
            {"IpProtocol": "17", "FromPort": 32768, "ToPort": 65535,
             "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]),
        # half of the internet is "the internet" (at least a /8 of public addresses)
        "ssh-half": _group(ec2, vpc, "ssh-half", [
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": halves[:1]}]),
        # good: private sources, and one small public range (a /20)
        "private": _group(ec2, vpc, "private", [
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
             "IpRanges": [{"CidrIp": "35.235.240.0/20"}]}]),
    }
    records = collect(["ec2"])
    by_name = {rec.payload.get("GroupName"): rec.resource_id for rec in records
               if isinstance(rec, Evidence) and rec.resource_type == "aws.ec2.security_group"}
    assert set(groups) <= set(by_name)

    def failing(check_id: str) -> set[str]:
        found = verdicts(records, check_id)
        return {name for name in groups if found[by_name[name]] == "fail"}

    assert failing("aws.network.ssh_open_to_internet") == {
        "ssh-split", "ssh-prefix-list", "ssh-public-only", "ssh-half", "all-from-1"}
    assert failing("aws.network.rdp_open_to_internet") == {"rdp-v6-split", "all-from-1"}
    assert failing("aws.network.all_ports_open_to_internet") == {"all-from-1", "all-split"}
    listed = next(r for r in records if isinstance(r, Evidence)
                  and r.resource_id == by_name["ssh-prefix-list"])
    assert listed.payload["PrefixListEntries"] == {pl: ["0.0.0.0/0"]}


# --- S3: the account-level block, and TLS for objects ------------------------------------


def _s3control() -> Any:
    return make_client(boto3.Session(region_name=REGION), "s3control", REGION,
                       ClientSettings(endpoint_url=boto3.client("s3").meta.endpoint_url))


def test_account_level_block_protects_buckets_without_their_own(aws_env: str) -> None:
    """S3 applies the account's and the bucket's public access block together. A bucket
    with no block of its own, and a bucket whose policy is public (``Principal: "*"``),
    are both protected when the account blocks everything (Prowler:
    s3_bucket_level_public_access_block, s3_bucket_public_access)."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="annexa-no-own-block")
    s3.create_bucket(Bucket="annexa-public-policy")
    s3.put_bucket_policy(Bucket="annexa-public-policy", Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": "arn:aws:s3:::annexa-public-policy/*"}]}))
    _s3control().put_public_access_block(AccountId=MAIN, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True})
    records = collect(["s3"])
    assert verdicts(records, "aws.s3.bucket_public_access_block") == {
        "annexa-no-own-block": "pass", "annexa-public-policy": "pass"}
    assert verdicts(records, "aws.s3.bucket_not_public") == {
        "annexa-no-own-block": "pass", "annexa-public-policy": "pass"}
    # without the account's block the same buckets fail
    _s3control().delete_public_access_block(AccountId=MAIN)
    records = collect(["s3"])
    assert verdicts(records, "aws.s3.bucket_public_access_block") == {
        "annexa-no-own-block": "fail", "annexa-public-policy": "fail"}
    assert verdicts(records, "aws.s3.bucket_not_public")["annexa-public-policy"] == "fail"


def test_tls_deny_on_the_bucket_arn_alone_leaves_objects_readable(aws_env: str) -> None:
    """A Deny of ``s3:*`` when ``aws:SecureTransport`` is false on the bucket ARN only
    does not cover ``GetObject`` (its resource is ``<bucket>/<key>``): fail. With
    ``{"AWS": "*"}``, ``BoolIfExists`` and the objects covered: pass."""
    s3 = boto3.client("s3", region_name=REGION)

    def bucket(name: str, statement: dict[str, Any]) -> None:
        s3.create_bucket(Bucket=name)
        s3.put_bucket_policy(Bucket=name, Policy=json.dumps(
            {"Version": "2012-10-17", "Statement": [statement]}))

    bucket("annexa-tls-bucket-only", {
        "Sid": "DenyHttp", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": "arn:aws:s3:::annexa-tls-bucket-only",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}})
    bucket("annexa-tls-objects", {
        "Sid": "DenyHttp", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "s3:*",
        "Resource": ["arn:aws:s3:::annexa-tls-objects", "arn:aws:s3:::annexa-tls-objects/*"],
        "Condition": {"BoolIfExists": {"aws:SecureTransport": "false"}}})
    assert verdicts(collect(["s3"]), "aws.s3.bucket_tls_only") == {
        "annexa-tls-bucket-only": "fail", "annexa-tls-objects": "pass"}


# --- Stubber: answers moto does not give ---------------------------------------------------


@pytest.fixture
def account(aws_offline_env: None) -> Iterator[Account]:
    yield Account(MAIN, boto3.Session(), ClientSettings(), REGION)


def _stubbed(account: Account, service: str) -> Stubber:
    client = boto3.client(service, region_name=REGION)
    account._clients[(service, REGION)] = client  # the unit reads through this client
    stubber = Stubber(client)
    stubber.activate()
    return stubber


def test_config_recorder_failing_delivery_fails(account: Account) -> None:
    """DescribeConfigurationRecorderStatus as AWS answers it: ``lastStatus: "Failure"``
    (moto says ``FAILURE``), recording on."""
    s = _stubbed(account, "config")
    s.add_response("describe_configuration_recorders", {"ConfigurationRecorders": [{
        "name": "default", "roleARN": f"arn:aws:iam::{MAIN}:role/config",
        "recordingGroup": {"allSupported": True, "includeGlobalResourceTypes": True}}]})
    s.add_response("describe_configuration_recorder_status", {
        "ConfigurationRecordersStatus": [{
            "name": "default", "recording": True, "lastStatus": "Failure",
            "lastErrorCode": "NoSuchBucket", "lastErrorMessage": "bucket gone"}]})
    s.add_response("describe_conformance_packs", {"ConformancePackDetails": []})
    ev, _packs = config.read(account, REGION)
    s.assert_no_pending_responses()
    (finding,) = evaluate(ev, [REGISTRY.get("aws.config.recorder_enabled")], {})
    assert finding.status == "fail" and "NoSuchBucket" in finding.message


def test_quic_listeners_are_encrypted(account: Account) -> None:
    """DescribeListeners on a network load balancer with ``QUIC`` and ``TCP_QUIC``
    listeners (ProtocolEnum of elbv2 2015-12-01): QUIC is TLS 1.3 end to end."""
    s = _stubbed(account, "elbv2")
    arn = f"arn:aws:elasticloadbalancing:{REGION}:{MAIN}:loadbalancer/net/quic/50dc6c495c0c9188"
    s.add_response("describe_load_balancers", {"LoadBalancers": [{
        "LoadBalancerArn": arn, "LoadBalancerName": "quic", "Scheme": "internet-facing",
        "Type": "network", "State": {"Code": "active"}, "IpAddressType": "ipv4"}]})
    s.add_response("describe_listeners", {"Listeners": [
        {"ListenerArn": f"{arn}/1", "LoadBalancerArn": arn, "Port": 443, "Protocol": "QUIC",
         "DefaultActions": [{"Type": "forward", "TargetGroupArn": "tg"}]},
        {"ListenerArn": f"{arn}/2", "LoadBalancerArn": arn, "Port": 8443,
         "Protocol": "TCP_QUIC", "DefaultActions": [{"Type": "forward",
                                                     "TargetGroupArn": "tg"}]}]})
    (ev,) = elbv2.read(account, REGION)
    (finding,) = evaluate(ev, [REGISTRY.get("aws.elbv2.listeners_tls_only")], {})
    assert finding.status == "pass"


def test_read_replica_backups_are_its_sources(account: Account) -> None:
    """DescribeDBInstances: a MySQL read replica (``ReadReplicaSourceDBInstanceIdentifier``)
    keeps no automated backups of its own (retention 0); its source does."""
    s = _stubbed(account, "rds")
    base = {"DBInstanceClass": "db.t3.micro", "Engine": "mysql", "StorageEncrypted": True,
            "PubliclyAccessible": False, "MultiAZ": True, "DeletionProtection": True}
    s.add_response("describe_db_instances", {"DBInstances": [
        {**base, "DBInstanceIdentifier": "primary", "BackupRetentionPeriod": 7,
         "DBInstanceArn": f"arn:aws:rds:{REGION}:{MAIN}:db:primary"},
        {**base, "DBInstanceIdentifier": "replica", "BackupRetentionPeriod": 0,
         "ReadReplicaSourceDBInstanceIdentifier": "primary",
         "DBInstanceArn": f"arn:aws:rds:{REGION}:{MAIN}:db:replica"}]})
    s.add_response("describe_db_clusters", {"DBClusters": []})
    statuses = {ev.resource_id.rsplit(":", 1)[1]: f.status for ev in rds.read(account, REGION)
                for f in evaluate(ev, [REGISTRY.get("aws.rds.backup_retention")], {})}
    assert statuses == {"primary": "pass", "replica": "not_applicable"}
