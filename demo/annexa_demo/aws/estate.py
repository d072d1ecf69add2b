"""Simulated AWS estates, planted through boto3 into a fresh moto server.

Used by ``annexa demo``, the connector tests and the end-to-end tests.

:func:`seed_demo_estate` plants two accounts:

* the *main* account (the caller's, 123456789012 in moto): a mix of good and bad
  configuration in every service and in both demo regions — a weak password policy,
  console users with and without MFA, fresh, old, unused and inactive access keys,
  administrator policies on a group, a role and a user, a supplier's role without an
  external ID, buckets with and without
  encryption, public access block, TLS-only policy, versioning and logging, one public
  bucket, trails with and without validation, KMS and CloudWatch delivery, security
  groups open to the internet, unencrypted volumes, an IMDSv1 instance, a VPC without
  flow logs, a short log retention, a key without rotation, a weak RDS instance, and
  GuardDuty / Config / Security Hub / Backup / Access Analyzer / a TLS load balancer
  in one region only (GuardDuty without a threat intel set); old Inspector and ECR
  findings, no malware scanning, Macie
  without a scheduled job, a non-compliant conformance pack, a restore testing plan
  that restores nothing, a weak Aurora cluster and CloudFront distribution, no budget,
  workloads in the default VPC, and no organisation (see
  :mod:`annexa_demo.aws.estate_services`);
* the *secure* account (210987654321, reached by assuming a role): everything right,
  including an organisation of its own with a development account in an OU.

:func:`seed_org_estate` plants an AWS Organization: the main account as management
account and three member accounts (secure, weak — everything wrong —, and secure with
two flaws), each with a role ``annexa-audit``.

Both return, per account and check id, the resource ids expected to ``fail`` with the
checks' default parameters; every other resource of that check is expected to pass
(or be ``not_applicable``).

moto gaps bridged here, only when the moto server runs in this process
(``ThreadedMotoServer``, as in ``annexa demo`` and the tests; ``"aged": true`` in the
result): credentials that should look old are aged, and the credential report gets
the ``<root_account>`` row real AWS always has, by editing moto's in-memory state. moto
lacks some operations (Access Analyzer, Macie jobs…): :func:`ensure_moto_gaps` starts
the local fake of :mod:`annexa_demo.aws.fakes` unless its endpoint variables are set.
"""

from __future__ import annotations

import json
import os
import secrets
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from annexa_demo.aws import estate_services as services
from connectors.aws.session import ClientSettings, make_client

MAIN_ACCOUNT = "123456789012"
SECURE_ACCOUNT = "210987654321"
AUDIT_ROLE = "annexa-audit"
SECURE_ROLE_ARN = f"arn:aws:iam::{SECURE_ACCOUNT}:role/{AUDIT_ROLE}"
REGIONS = ("us-east-1", "eu-west-1")
HOME = "us-east-1"
OTHER = "eu-west-1"
ANALYZER_ENV = "AWS_ENDPOINT_URL_ACCESSANALYZER"
#: boto3 client name → the per-service endpoint variable of the local fake of moto's gaps.
_GAP_SERVICES = {
    "accessanalyzer": ANALYZER_ENV, "guardduty": "AWS_ENDPOINT_URL_GUARDDUTY",
    "macie2": "AWS_ENDPOINT_URL_MACIE2", "route53resolver": "AWS_ENDPOINT_URL_ROUTE53RESOLVER",
    "config": "AWS_ENDPOINT_URL_CONFIG_SERVICE", "backup": "AWS_ENDPOINT_URL_BACKUP",
}

_ALL_BLOCKED = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
_SSE_S3 = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
_SSE_KMS = {
    "Rules": [
        {
            "ApplyServerSideEncryptionByDefault": {
                "SSEAlgorithm": "aws:kms",
                "KMSMasterKeyID": "alias/annexa-demo",
            },
            "BucketKeyEnabled": True,
        }
    ]
}
_ADMIN_DOC = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
_READ_DOC = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": ["s3:Get*", "s3:List*"],
                            "Resource": "*"}]}
_TRUST_DOC = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                             "Action": "sts:AssumeRole"}]}
_MODERN_TLS = "ELBSecurityPolicy-TLS13-1-2-2021-06"
_OLD_TLS = "ELBSecurityPolicy-2016-08"

#: Days to age each credential of the main account by (user → (what, days)).
_AGES = {
    "dave-legacy": ("access key and user", 200),  # old, never-used active key
    "erin-dormant": ("user and console password", 100),  # console, never signed in
    "grace-former": ("inactive access key and user", 300),
}

#: Checks judged once per region on an account-level setting (id = region).
_REGIONAL_SETTINGS = {
    "guardduty": "aws.guardduty.enabled",
    "config": "aws.config.recorder_enabled",
    "securityhub": "aws.securityhub.enabled",
    "backup": "aws.backup.plan_exists",
    "accessanalyzer": "aws.accessanalyzer.enabled",
}


class _Estate:
    """boto3 clients for one account of the moto server."""

    def __init__(self, endpoint_url: str, credentials: dict[str, str], account_id: str) -> None:
        self.endpoint_url = endpoint_url
        self.credentials = credentials
        self.account_id = account_id
        self._clients: dict[tuple[str, str], Any] = {}

    def client(self, service: str, region: str = HOME) -> Any:
        """A client of this account (cached: creating boto3 clients is slow)."""
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = self._new_client(service, region)
        return self._clients[key]

    def _new_client(self, service: str, region: str) -> Any:
        endpoint = self.endpoint_url
        if service in _GAP_SERVICES:  # operations moto lacks: the local fake
            endpoint = os.environ.get(_GAP_SERVICES[service]) or endpoint
        # The connector's own client factory: S3 Control then calls the endpoint's host
        # (not <account>.127.0.0.1, which does not resolve), exactly as in a collection.
        session = boto3.Session(region_name=region, **self.credentials)
        settings = ClientSettings(endpoint_url=endpoint, max_attempts=2)
        return make_client(session, service, region, settings)

    def arn(self, service: str, region: str, resource: str) -> str:
        return f"arn:aws:{service}:{region}:{self.account_id}:{resource}"


class _Plan:
    """What was planted in one account, and which resources each check should fail."""

    def __init__(self, estate: _Estate, suffix: str = "") -> None:
        self.estate = estate
        self.account_id = estate.account_id
        self.suffix = suffix  # keeps bucket names unique across the accounts of one moto
        self.fail: dict[str, list[str]] = defaultdict(list)
        self.users: dict[str, dict[str, Any]] = {}
        self.root: dict[str, Any] | None = None  # the root row to plant in moto

    def bad(self, check_id: str, *resource_ids: str) -> None:
        self.fail[check_id].extend(resource_ids)

    def name(self, base: str) -> str:
        return f"{base}{self.suffix}"


# --- IAM -------------------------------------------------------------------------------


def _password() -> str:
    return secrets.token_urlsafe(24) + "!Aa1"


def _user(
    iam: Any, name: str, *, console: bool = False, mfa: bool = False, key: str | None = None
) -> dict[str, Any]:
    """Create a user; ``key`` is None, "Active" or "Inactive". Returns ids planted."""
    user = iam.create_user(UserName=name)["User"]
    out: dict[str, Any] = {"arn": user["Arn"], "user_id": user["UserId"]}
    if console:
        iam.create_login_profile(UserName=name, Password=_password())
    if mfa:
        serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=f"{name}-mfa")[
            "VirtualMFADevice"
        ]["SerialNumber"]
        iam.enable_mfa_device(
            UserName=name,
            SerialNumber=serial,
            AuthenticationCode1="123456",
            AuthenticationCode2="654321",
        )
    if key:
        created = iam.create_access_key(UserName=name)["AccessKey"]
        out["key"] = {"id": created["AccessKeyId"], "secret": created["SecretAccessKey"]}
        if key == "Inactive":
            iam.update_access_key(UserName=name, AccessKeyId=created["AccessKeyId"],
                                  Status="Inactive")
    return out


def _use_key(estate: _Estate, key: dict[str, str]) -> None:
    """Make one API call with ``key`` so moto records its last use."""
    boto3.client(
        "sts",
        endpoint_url=estate.endpoint_url,
        region_name=HOME,
        aws_access_key_id=key["id"],
        aws_secret_access_key=key["secret"],
    ).get_caller_identity()


def _password_policy(p: _Plan, strong: bool | None) -> None:
    """``None``: no policy at all (every password-policy check fails)."""
    if strong is None:
        p.bad("aws.iam.password_policy_min_length", p.account_id)
        p.bad("aws.iam.password_policy_reuse", p.account_id)
        p.bad("aws.iam.password_policy_complexity", p.account_id)
        return
    iam = p.estate.client("iam")
    if strong:
        iam.update_account_password_policy(
            MinimumPasswordLength=16, RequireSymbols=True, RequireNumbers=True,
            RequireUppercaseCharacters=True, RequireLowercaseCharacters=True,
            PasswordReusePrevention=24, MaxPasswordAge=90,
        )
        return
    iam.update_account_password_policy(
        MinimumPasswordLength=8, RequireSymbols=False, RequireNumbers=True,
        RequireUppercaseCharacters=True, RequireLowercaseCharacters=True,
    )
    p.bad("aws.iam.password_policy_min_length", p.account_id)
    p.bad("aws.iam.password_policy_reuse", p.account_id)
    p.bad("aws.iam.password_policy_complexity", p.account_id)


def _policy(iam: Any, name: str, document: dict[str, Any]) -> str:
    return iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document))["Policy"][
        "Arn"]


def _group(p: _Plan, name: str, policy_arn: str, *, admin: bool, members: tuple[str, ...] = ()
           ) -> None:
    iam = p.estate.client("iam")
    arn = iam.create_group(GroupName=name)["Group"]["Arn"]
    iam.attach_group_policy(GroupName=name, PolicyArn=policy_arn)
    for member in members:
        iam.add_user_to_group(GroupName=name, UserName=member)
    if admin:
        p.bad("aws.iam.group_no_full_admin_policy", arn)


def _role(p: _Plan, name: str, *, admin: bool, managed: str | None = None) -> None:
    iam = p.estate.client("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(_TRUST_DOC))[
        "Role"]["Arn"]
    if managed:
        iam.attach_role_policy(RoleName=name, PolicyArn=managed)
    else:
        document = _ADMIN_DOC if admin else _READ_DOC
        iam.put_role_policy(RoleName=name, PolicyName=f"{name}-inline",
                            PolicyDocument=json.dumps(document))
    if admin:
        p.bad("aws.iam.role_no_full_admin_policy", arn)


#: A supplier's AWS account (outside every demo organisation).
VENDOR_ACCOUNT = "464622532012"


def _vendor_role(p: _Plan, name: str, *, external_id: str | None) -> None:
    """A role a supplier's account assumes (read-only), with or without the external ID
    the supplier issued (``aws.iam.role_third_party_external_id``)."""
    statement: dict[str, Any] = {
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": f"arn:aws:iam::{VENDOR_ACCOUNT}:root"},
    }
    if external_id:
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    iam = p.estate.client("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [statement]}))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName=f"{name}-inline",
                        PolicyDocument=json.dumps(_READ_DOC))
    if not external_id:
        p.bad("aws.iam.role_third_party_external_id", arn)


def _root(p: _Plan, *, mfa: bool, used_days_ago: int | None) -> None:
    """The root user's credential-report row (planted in moto's state, see module doc)."""
    p.root = {"mfa": mfa, "used_days_ago": used_days_ago}
    root_arn = f"arn:aws:iam::{p.account_id}:root"
    if not mfa:
        p.bad("aws.iam.root_mfa", root_arn)
        p.bad("aws.iam.root_hardware_mfa", root_arn)
    if used_days_ago is not None and used_days_ago <= 30:
        p.bad("aws.iam.root_recent_use", root_arn)


# --- S3 and CloudTrail -----------------------------------------------------------------


def _tls_only_policy(bucket: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            # {"AWS": "*"} rather than "*": moto's bucket-logging check cannot read the
            # plain string form on a log target bucket
            "Principal": {"AWS": "*"},
            "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    }


def _public_read_policy(bucket: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
                       "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}],
    }


def _bucket(
    p: _Plan,
    name: str,
    *,
    region: str = HOME,
    encryption: dict[str, Any] | None = None,
    block: dict[str, bool] | None = None,
    policy: dict[str, Any] | None = None,
    acl: str | None = None,
    versioning: bool = False,
    log_to: str | None = None,
    log_target: bool = False,
    object_lock: bool = False,
    expire_days: int | None = None,
) -> str:
    """Create a bucket as described and record which S3 checks it should fail."""
    s3 = p.estate.client("s3", region)
    extra: dict[str, Any] = {"ObjectLockEnabledForBucket": True} if object_lock else {}
    if region == "us-east-1":
        s3.create_bucket(Bucket=name, **extra)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region},
                         **extra)
    if object_lock:
        s3.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 365}}})
    if expire_days:
        s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": [{
            "ID": "expire-logs", "Status": "Enabled", "Filter": {"Prefix": ""},
            "Expiration": {"Days": expire_days},
            "NoncurrentVersionExpiration": {"NoncurrentDays": 30}}]})
    if encryption:
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=encryption)
    if block:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
    if policy:
        s3.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
    if log_target:
        s3.put_bucket_acl(Bucket=name, ACL="log-delivery-write")
    elif acl:
        s3.put_bucket_acl(Bucket=name, ACL=acl)
    if versioning:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    if log_to:
        s3.put_bucket_logging(Bucket=name, BucketLoggingStatus={
            "LoggingEnabled": {"TargetBucket": log_to, "TargetPrefix": f"{name}/"}})
    block = block or {}
    if not encryption:
        p.bad("aws.s3.bucket_default_encryption", name)
    if not all(block.get(f) for f in _ALL_BLOCKED):
        p.bad("aws.s3.bucket_public_access_block", name)
    public_acl = acl in ("public-read", "public-read-write") and not block.get("IgnorePublicAcls")
    public_policy = (policy is not None and any(
        s.get("Effect") == "Allow" and s.get("Principal") == "*" for s in policy["Statement"])
        and not block.get("RestrictPublicBuckets"))
    if public_acl or public_policy:
        p.bad("aws.s3.bucket_not_public", name)
    if not (policy and any(s.get("Sid") == "DenyInsecureTransport"
                           for s in policy["Statement"])):
        p.bad("aws.s3.bucket_tls_only", name)
    if not versioning:
        p.bad("aws.s3.bucket_versioning", name)
    if not log_to:
        p.bad("aws.s3.bucket_access_logging", name)
    return name


def _trail(
    p: _Plan,
    name: str,
    bucket: str,
    *,
    region: str = HOME,
    multi_region: bool,
    validation: bool,
    logging: bool,
    kms_key: str | None = None,
    log_group: str | None = None,
    public_bucket: bool = False,
    archived: bool = False,
) -> str:
    """``archived``: the bucket has Object Lock and an expiration rule."""
    cloudtrail = p.estate.client("cloudtrail", region)
    extra: dict[str, Any] = {}
    if kms_key:
        extra["KmsKeyId"] = kms_key
    if log_group:
        extra["CloudWatchLogsLogGroupArn"] = p.estate.arn(
            "logs", region, f"log-group:{log_group}:*")
        extra["CloudWatchLogsRoleArn"] = f"arn:aws:iam::{p.account_id}:role/cloudtrail-logs"
    arn = cloudtrail.create_trail(
        Name=name, S3BucketName=bucket, IsMultiRegionTrail=multi_region,
        EnableLogFileValidation=validation, **extra,
    )["TrailARN"]
    if logging:
        cloudtrail.start_logging(Name=name)
    if not validation:
        p.bad("aws.cloudtrail.log_file_validation", arn)
    if not kms_key:
        p.bad("aws.cloudtrail.kms_encryption", arn)
    if not log_group:
        p.bad("aws.cloudtrail.cloudwatch_delivery", arn)
    if public_bucket:
        p.bad("aws.cloudtrail.bucket_not_public", arn)
    if not archived:
        p.bad("aws.cloudtrail.logs_immutable", arn)
        p.bad("aws.cloudtrail.bucket_lifecycle", arn)
    return arn


# --- regional services -----------------------------------------------------------------


def _kms_key(p: _Plan, region: str, *, rotation: bool) -> str:
    kms = p.estate.client("kms", region)
    meta = kms.create_key(Description="annexa demo key")["KeyMetadata"]
    if rotation:
        kms.enable_key_rotation(KeyId=meta["KeyId"])
    else:
        p.bad("aws.kms.key_rotation", meta["Arn"])
    return str(meta["Arn"])


def _log_group(p: _Plan, region: str, name: str, retention: int | None) -> None:
    logs = p.estate.client("logs", region)
    logs.create_log_group(logGroupName=name)
    if retention is None:
        p.bad("aws.logs.log_group_retention_set", p.estate.arn("logs", region,
                                                               f"log-group:{name}"))
    if retention is not None:
        logs.put_retention_policy(logGroupName=name, retentionInDays=retention)
        if retention < 365:
            p.bad("aws.logs.log_group_retention", p.estate.arn("logs", region,
                                                               f"log-group:{name}"))


def _security_group(p: _Plan, region: str, name: str, rules: list[dict[str, Any]]) -> None:
    ec2 = p.estate.client("ec2", region)
    group_id = ec2.create_security_group(GroupName=name, Description=name)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=rules)
    arn = p.estate.arn("ec2", region, f"security-group/{group_id}")
    internet = [r for r in rules if any(x.get("CidrIp") == "0.0.0.0/0" for x in r.get(
        "IpRanges", [])) or any(x.get("CidrIpv6") == "::/0" for x in r.get("Ipv6Ranges", []))]
    if any(r["IpProtocol"] == "-1" for r in internet):
        p.bad("aws.network.all_ports_open_to_internet", arn)
    if any(r["IpProtocol"] == "-1" or r.get("FromPort", 0) <= 22 <= r.get("ToPort", -1)
           for r in internet):
        p.bad("aws.network.ssh_open_to_internet", arn)
    if any(r["IpProtocol"] == "-1" or r.get("FromPort", 0) <= 3389 <= r.get("ToPort", -1)
           for r in internet):
        p.bad("aws.network.rdp_open_to_internet", arn)


def _ssh_by_union(p: _Plan, region: str) -> None:
    """SSH open to the internet with no rule naming 0.0.0.0/0 and port 22 alone: two
    halves of IPv4 (one rule by protocol number), and a customer prefix list that holds
    0.0.0.0/0."""
    ec2 = p.estate.client("ec2", region)
    pl = ec2.create_managed_prefix_list(
        PrefixListName="annexa-demo-partners", MaxEntries=5, AddressFamily="IPv4",
        Entries=[{"Cidr": "0.0.0.0/0", "Description": "meant to be partners"}],
    )["PrefixList"]["PrefixListId"]
    for name, rules in (
        ("annexa-demo-ssh-halves", [
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
             "IpRanges": [{"CidrIp": "0.0.0.0/1"}]},
            {"IpProtocol": "6", "FromPort": 20, "ToPort": 23,
             "IpRanges": [{"CidrIp": "128.0.0.0/1"}]}]),
        ("annexa-demo-ssh-partners", [
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
             "PrefixListIds": [{"PrefixListId": pl}]}]),
    ):
        group_id = ec2.create_security_group(GroupName=name, Description=name)["GroupId"]
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=rules)
        p.bad("aws.network.ssh_open_to_internet",
              p.estate.arn("ec2", region, f"security-group/{group_id}"))


def _cidr(cidr: str, port: int, protocol: str = "tcp") -> dict[str, Any]:
    key, ranges = ("Ipv6Ranges", [{"CidrIpv6": cidr}]) if ":" in cidr else (
        "IpRanges", [{"CidrIp": cidr}])
    rule: dict[str, Any] = {"IpProtocol": protocol, key: ranges}
    if protocol != "-1":
        rule.update(FromPort=port, ToPort=port)
    return rule


def _ec2(p: _Plan, region: str, *, ebs_default: bool, volume_encrypted: bool, imdsv2: bool,
         root_encrypted: bool, own_vpc: bool = False) -> None:
    """``own_vpc``: the instance runs in a VPC of its own, else in the default VPC."""
    ec2 = p.estate.client("ec2", region)
    placement: dict[str, Any] = {}
    if own_vpc:
        vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24",
                                   AvailabilityZone=f"{region}a")["Subnet"]["SubnetId"]
        placement["SubnetId"] = subnet
    else:
        (default,) = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])[
            "Vpcs"]
        p.bad("aws.vpc.default_vpc_unused", p.estate.arn("ec2", region,
                                                         f"vpc/{default['VpcId']}"))
    if ebs_default:
        ec2.enable_ebs_encryption_by_default()
    else:
        p.bad("aws.ec2.ebs_default_encryption", region)
    volume = ec2.create_volume(AvailabilityZone=f"{region}a", Size=1,
                               Encrypted=volume_encrypted)["VolumeId"]
    if not volume_encrypted:
        p.bad("aws.ec2.volume_encrypted", p.estate.arn("ec2", region, f"volume/{volume}"))
    instance = ec2.run_instances(
        ImageId="ami-12345678", MinCount=1, MaxCount=1, InstanceType="t3.micro",
        MetadataOptions={"HttpTokens": "required" if imdsv2 else "optional"},
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1",
                              "Ebs": {"VolumeSize": 8, "Encrypted": root_encrypted}}],
        **placement,
    )["Instances"][0]
    if not imdsv2:
        p.bad("aws.ec2.instance_imdsv2",
              p.estate.arn("ec2", region, f"instance/{instance['InstanceId']}"))
    for mapping in instance.get("BlockDeviceMappings", []):
        volume_id = mapping["Ebs"]["VolumeId"]
        if not root_encrypted:
            p.bad("aws.ec2.volume_encrypted", p.estate.arn("ec2", region, f"volume/{volume_id}"))
    # An encrypted volume without a key makes moto create the EBS default key as a
    # *customer managed* key without rotation (real AWS uses the AWS managed aws/ebs
    # key): rotate it, so that key-rotation expectations stay what was planted.
    kms = p.estate.client("kms", region)
    for key in kms.list_keys()["Keys"]:
        meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
        if meta.get("Description", "").startswith("Default master key that protects my EBS"):
            kms.enable_key_rotation(KeyId=key["KeyId"])


def _flow_logs(p: _Plan, region: str, bucket: str | None) -> None:
    ec2 = p.estate.client("ec2", region)
    vpcs = [v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]]
    if bucket:
        ec2.create_flow_logs(ResourceIds=vpcs, ResourceType="VPC", TrafficType="ALL",
                             LogDestinationType="s3", LogDestination=f"arn:aws:s3:::{bucket}")
        return
    for vpc in vpcs:
        p.bad("aws.vpc.flow_logs_enabled", p.estate.arn("ec2", region, f"vpc/{vpc}"))


def _rds(p: _Plan, region: str, name: str, *, good: bool) -> None:
    rds = p.estate.client("rds", region)
    arn = rds.create_db_instance(
        DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres",
        MasterUsername="annexa", MasterUserPassword=_password(), AllocatedStorage=20,
        StorageEncrypted=good, BackupRetentionPeriod=7 if good else 1,
        PubliclyAccessible=not good, MultiAZ=good, DeletionProtection=good,
    )["DBInstance"]["DBInstanceArn"]
    if not good:
        for check_id in ("storage_encrypted", "backup_retention", "not_publicly_accessible",
                         "multi_az", "deletion_protection"):
            p.bad(f"aws.rds.{check_id}", arn)


def _regional_settings(p: _Plan, region: str, bucket: str, *, off: tuple[str, ...] = (),
                       malware: bool = True, threat_intel: bool = True) -> None:
    """GuardDuty (with Malware Protection for EC2 if ``malware`` and an active threat
    intel set if ``threat_intel``), Config, Security Hub, Backup and Access Analyzer,
    except ``off``."""
    e = p.estate
    for service, check_id in _REGIONAL_SETTINGS.items():
        if service in off:
            p.bad(check_id, region)
    if "guardduty" in off or not malware:
        p.bad("aws.guardduty.malware_protection", region)
    if "guardduty" in off or not threat_intel:
        p.bad("aws.guardduty.threat_intel_applied", region)
    if "guardduty" not in off:
        features = [{"Name": "EBS_MALWARE_PROTECTION", "Status": "ENABLED"}] if malware else []
        guardduty = e.client("guardduty", region)
        detector = guardduty.create_detector(Enable=True, Features=features)["DetectorId"]
        if threat_intel:
            guardduty.create_threat_intel_set(
                DetectorId=detector, Name="isac-blocklist", Format="TXT", Activate=True,
                Location=f"https://s3.amazonaws.com/{bucket}/threat-intel/blocklist.txt")
    if "config" not in off:
        config = e.client("config", region)
        config.put_configuration_recorder(ConfigurationRecorder={
            "name": "default", "roleARN": f"arn:aws:iam::{p.account_id}:role/config",
            "recordingGroup": {"allSupported": True, "includeGlobalResourceTypes": True}})
        config.put_delivery_channel(DeliveryChannel={"name": "default",
                                                     "s3BucketName": bucket})
        config.start_configuration_recorder(ConfigurationRecorderName="default")
    if "securityhub" not in off:
        e.client("securityhub", region).enable_security_hub()
    if "backup" not in off:
        e.client("backup", region).create_backup_plan(BackupPlan={
            "BackupPlanName": "daily", "Rules": [{
                "RuleName": "daily", "TargetBackupVaultName": "Default",
                "ScheduleExpression": "cron(0 5 * * ? *)"}]})
    if "accessanalyzer" not in off:
        e.client("accessanalyzer", region).create_analyzer(analyzerName="account",
                                                           type="ACCOUNT")


def _load_balancer(p: _Plan, region: str, name: str, *, redirect: bool,
                   tls_policy: str | None, waf: bool = False) -> None:
    e = p.estate
    subnets = [s["SubnetId"] for s in e.client("ec2", region).describe_subnets()["Subnets"]]
    elb = e.client("elbv2", region)
    arn = elb.create_load_balancer(Name=name, Subnets=subnets[:2], Scheme="internet-facing",
                                   Type="application")["LoadBalancers"][0]["LoadBalancerArn"]
    action = ({"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443",
                                                      "StatusCode": "HTTP_301"}}
              if redirect else
              {"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "200"}})
    elb.create_listener(LoadBalancerArn=arn, Protocol="HTTP", Port=80, DefaultActions=[action])
    if waf:
        services.web_acl(p, region, arn)
    else:
        p.bad("aws.elbv2.public_alb_waf", arn)
    if not redirect:
        p.bad("aws.elbv2.listeners_tls_only", arn)
    if tls_policy:
        cert = e.client("acm", region).request_certificate(DomainName="example.com")[
            "CertificateArn"]
        elb.create_listener(
            LoadBalancerArn=arn, Protocol="HTTPS", Port=443, SslPolicy=tls_policy,
            Certificates=[{"CertificateArn": cert}],
            DefaultActions=[{"Type": "fixed-response",
                             "FixedResponseConfig": {"StatusCode": "200"}}])
        if tls_policy != _MODERN_TLS:
            p.bad("aws.elbv2.listeners_modern_tls_policy", arn)


# --- the accounts ----------------------------------------------------------------------


def _plant_main(p: _Plan) -> None:
    e, iam = p.estate, p.estate.client("iam")
    _password_policy(p, strong=False)
    users = {
        "alice-admin": _user(iam, "alice-admin", console=True, mfa=True),
        "bob-console": _user(iam, "bob-console", console=True),
        "carol-ci": _user(iam, "carol-ci", key="Active"),
        "dave-legacy": _user(iam, "dave-legacy", key="Active"),
        "erin-dormant": _user(iam, "erin-dormant", console=True, mfa=True),
        "frank-nocreds": _user(iam, "frank-nocreds"),
        "grace-former": _user(iam, "grace-former", key="Inactive"),
    }
    p.users = users
    _use_key(e, users["carol-ci"]["key"])
    p.bad("aws.iam.user_console_mfa", users["bob-console"]["arn"])
    admin = _policy(iam, "annexa-demo-admin", _ADMIN_DOC)
    read = _policy(iam, "annexa-demo-read", _READ_DOC)
    _group(p, "annexa-demo-admins", admin, admin=True, members=("alice-admin",))
    _group(p, "annexa-demo-readers", read, admin=False, members=("carol-ci",))
    iam.attach_user_policy(UserName="dave-legacy", PolicyArn=admin)
    p.bad("aws.iam.user_no_full_admin_policy", users["dave-legacy"]["arn"])
    _role(p, "annexa-demo-deployer", admin=True)
    _role(p, "annexa-demo-reporting", admin=False, managed=read)
    _vendor_role(p, "annexa-demo-vendor-monitoring", external_id=None)
    _vendor_role(p, "annexa-demo-vendor-backup", external_id="vendor-issued-7f3a")
    _root(p, mfa=True, used_days_ago=2)

    logs = _bucket(p, "annexa-demo-logs", encryption=_SSE_S3, block=_ALL_BLOCKED,
                   policy=_tls_only_policy("annexa-demo-logs"), versioning=True,
                   log_target=True)
    _bucket(p, "annexa-demo-unencrypted", block=_ALL_BLOCKED, log_to=logs)
    public = _bucket(
        p, "annexa-demo-public", encryption=_SSE_KMS,
        block={**_ALL_BLOCKED, "BlockPublicPolicy": False, "RestrictPublicBuckets": False},
        policy=_public_read_policy("annexa-demo-public"),
    )
    eu = _bucket(p, "annexa-demo-eu-data", region=OTHER, encryption=_SSE_S3, versioning=True)
    p.bad("aws.s3control.account_public_access_block", p.account_id)

    trail_key = _kms_key(p, HOME, rotation=True)
    _kms_key(p, OTHER, rotation=False)
    _log_group(p, HOME, "annexa-demo-trail", None)
    _log_group(p, HOME, "annexa-demo-app", 30)
    _log_group(p, OTHER, "annexa-demo-audit", 400)
    _trail(p, "annexa-demo-org-wide", logs, multi_region=True, validation=True, logging=False,
           kms_key=trail_key, log_group="annexa-demo-trail")
    _trail(p, "annexa-demo-app", public, multi_region=False, validation=False, logging=True,
           public_bucket=True)
    _trail(p, "annexa-demo-eu", eu, region=OTHER, multi_region=False, validation=True,
           logging=True)
    p.bad("aws.cloudtrail.multi_region_logging", p.account_id)

    _ec2(p, HOME, ebs_default=True, volume_encrypted=True, imdsv2=True, root_encrypted=True)
    _ec2(p, OTHER, ebs_default=False, volume_encrypted=False, imdsv2=False,
         root_encrypted=False)
    _security_group(p, HOME, "annexa-demo-ssh-open", [_cidr("0.0.0.0/0", 22)])
    _security_group(p, HOME, "annexa-demo-rdp-v6", [_cidr("::/0", 3389)])
    _security_group(p, HOME, "annexa-demo-web", [_cidr("0.0.0.0/0", 443),
                                                 _cidr("10.0.0.0/8", 22)])
    _security_group(p, OTHER, "annexa-demo-all-open", [_cidr("0.0.0.0/0", 0, "-1")])
    _ssh_by_union(p, HOME)
    _flow_logs(p, HOME, logs)
    _flow_logs(p, OTHER, None)
    _rds(p, HOME, "annexa-demo-orders", good=True)
    _rds(p, OTHER, "annexa-demo-legacy", good=False)
    _regional_settings(p, HOME, logs, malware=False, threat_intel=False)
    _regional_settings(p, OTHER, logs, off=tuple(_REGIONAL_SETTINGS))
    _load_balancer(p, HOME, "annexa-demo-web", redirect=True, tls_policy=_MODERN_TLS,
                   waf=True)
    _load_balancer(p, OTHER, "annexa-demo-legacy", redirect=False, tls_policy=_OLD_TLS)
    services.inspector(p, HOME, scanning=True,
                       findings=[("CRITICAL", 40), ("HIGH", 5), ("LOW", 400)])
    services.inspector(p, OTHER, scanning=False, findings=[])
    services.ecr_image(p, HOME, "annexa-demo-api", scanned_days_ago=60)
    services.ecr_image(p, HOME, "annexa-demo-web", scanned_days_ago=1)
    services.ecr_image(p, OTHER, "annexa-demo-batch", scanned_days_ago=None)
    services.macie(p, HOME, enabled=True, scheduled_job=False)
    services.macie(p, OTHER, enabled=False, scheduled_job=False)
    services.conformance_pack(p, HOME, "NON_COMPLIANT")
    services.conformance_pack(p, OTHER, None)
    services.restore_testing(p, HOME, plan=True, selection=False)
    services.restore_testing(p, OTHER, plan=False, selection=False)
    services.aurora_cluster(p, HOME, "annexa-demo-reports", good=False)
    services.distribution(p, good=False)
    services.budget(p, alerts=False)
    services.dns_firewall(p, HOME, associate=True)
    services.dns_firewall(p, OTHER, associate=False)


def _plant_secure(p: _Plan, *, flaws: bool = False) -> None:
    """Everything right; with ``flaws``, root was used recently and GuardDuty is off in
    the second region. (Its organisation is planted by the caller.)"""
    e, iam = p.estate, p.estate.client("iam")
    _password_policy(p, strong=True)
    p.users = {
        "ops-admin": _user(iam, p.name("ops-admin"), console=True, mfa=True),
        "ci-deployer": _user(iam, p.name("ci-deployer"), key="Active"),
    }
    _use_key(e, p.users["ci-deployer"]["key"])
    read = _policy(iam, "annexa-read", _READ_DOC)
    _group(p, "annexa-auditors", read, admin=False, members=(p.name("ops-admin"),))
    _role(p, "annexa-app", admin=False)
    _vendor_role(p, p.name("annexa-vendor-monitoring"), external_id="vendor-issued-c41e")
    _root(p, mfa=True, used_days_ago=3 if flaws else 400)

    logs = _bucket(p, p.name("annexa-secure-logs"), encryption=_SSE_KMS, block=_ALL_BLOCKED,
                   policy=_tls_only_policy(p.name("annexa-secure-logs")), versioning=True,
                   log_target=True, log_to=p.name("annexa-secure-logs"))
    archive = _bucket(p, p.name("annexa-secure-archive"), encryption=_SSE_KMS,
                      block=_ALL_BLOCKED, policy=_tls_only_policy(p.name("annexa-secure-archive")),
                      versioning=True, log_to=logs, object_lock=True, expire_days=400)
    e.client("s3control").put_public_access_block(
        AccountId=p.account_id, PublicAccessBlockConfiguration=_ALL_BLOCKED
    )
    key = _kms_key(p, HOME, rotation=True)
    _kms_key(p, OTHER, rotation=True)
    _log_group(p, HOME, "annexa-secure-trail", 400)
    _trail(p, p.name("annexa-secure-trail"), archive, multi_region=True, validation=True,
           logging=True, kms_key=key, log_group="annexa-secure-trail", archived=True)
    for region in REGIONS:
        _ec2(p, region, ebs_default=True, volume_encrypted=True, imdsv2=True,
             root_encrypted=True, own_vpc=True)
        _security_group(p, region, "annexa-web", [_cidr("0.0.0.0/0", 443),
                                                  _cidr("::/0", 443)])
        _flow_logs(p, region, logs)
        _regional_settings(p, region, logs,
                           off=("guardduty",) if flaws and region == OTHER else ())
    _rds(p, HOME, p.name("annexa-secure-db"), good=True)
    _load_balancer(p, HOME, p.name("annexa-web"), redirect=True, tls_policy=_MODERN_TLS,
                   waf=True)
    services.s3_malware_plan(p, HOME, archive)
    for region in REGIONS:
        services.inspector(p, region, scanning=True,
                           findings=[("HIGH", 3)] if region == HOME else [])
        services.macie(p, region, enabled=True, scheduled_job=True)
        services.conformance_pack(p, region, "COMPLIANT")
        services.restore_testing(p, region, plan=True, selection=True)
        services.dns_firewall(p, region, associate=True)
    services.ecr_image(p, HOME, p.name("annexa-api"), scanned_days_ago=2)
    services.aurora_cluster(p, HOME, p.name("annexa-secure-cluster"), good=True)
    services.distribution(p, good=True)
    services.budget(p, alerts=True)


def _plant_weak(p: _Plan) -> None:
    """Everything wrong (an organisation member nobody looked after)."""
    iam = p.estate.client("iam")
    _password_policy(p, strong=None)
    p.users = {
        "intern": _user(iam, "intern", console=True),
        "legacy-admin": _user(iam, "legacy-admin"),
    }
    p.bad("aws.iam.user_console_mfa", p.users["intern"]["arn"])
    admin = _policy(iam, "full-admin", _ADMIN_DOC)
    iam.attach_user_policy(UserName="legacy-admin", PolicyArn=admin)
    p.bad("aws.iam.user_no_full_admin_policy", p.users["legacy-admin"]["arn"])
    _group(p, "everyone", admin, admin=True, members=("intern",))
    _role(p, "legacy-ec2", admin=True, managed=admin)
    if _iam_backend_has_aws_policies(p.account_id):
        _role(p, "aws-admin", admin=True, managed="arn:aws:iam::aws:policy/AdministratorAccess")
        _role(p, "aws-reader", admin=False, managed="arn:aws:iam::aws:policy/ReadOnlyAccess")
    _root(p, mfa=False, used_days_ago=0)

    bucket = _bucket(p, p.name("annexa-weak-share"), acl="public-read")
    p.bad("aws.s3control.account_public_access_block", p.account_id)
    p.bad("aws.cloudtrail.multi_region_logging", p.account_id)  # no trail at all
    _kms_key(p, HOME, rotation=False)
    _log_group(p, HOME, "app", 7)
    for region in REGIONS:
        _ec2(p, region, ebs_default=False, volume_encrypted=False, imdsv2=False,
             root_encrypted=False)
        _flow_logs(p, region, None)
        _regional_settings(p, region, bucket, off=tuple(_REGIONAL_SETTINGS))
    _security_group(p, HOME, "wide-open", [_cidr("0.0.0.0/0", 0, "-1"),
                                           _cidr("::/0", 0, "-1")])
    _rds(p, HOME, p.name("annexa-weak-db"), good=False)
    _load_balancer(p, HOME, p.name("weak-web"), redirect=False, tls_policy=None)
    for region in REGIONS:
        services.inspector(p, region, scanning=False, findings=[])
        services.macie(p, region, enabled=False, scheduled_job=False)
        services.conformance_pack(p, region, None)
        services.restore_testing(p, region, plan=False, selection=False)
        services.dns_firewall(p, region, associate=False)
    services.ecr_image(p, HOME, p.name("weak-app"), scanned_days_ago=None)
    services.aurora_cluster(p, HOME, p.name("annexa-weak-cluster"), good=False)
    services.distribution(p, good=False)
    services.budget(p, alerts=False)


# --- moto's in-process state -----------------------------------------------------------


def _iam_backend(account_id: str) -> Any:
    try:
        from moto.iam.models import iam_backends
    except ImportError:
        return None
    if account_id not in list(iam_backends.keys()):
        return None
    return dict.get(iam_backends[account_id], "aws")


@contextmanager
def _moto_setting(name: str, value: str, *, enabled: bool) -> Iterator[None]:
    """A moto setting (read from the environment of this process) for one call."""
    if not enabled:
        yield
        return
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def _iam_backend_has_aws_policies(account_id: str) -> bool:
    backend = _iam_backend(account_id)
    return backend is not None and bool(getattr(backend, "aws_managed_policies", None))


def _age_in_process(account_id: str, users: dict[str, dict[str, Any]]) -> bool:
    """Backdate the main account's credentials in moto's in-memory state.

    Only possible when the moto server serving the endpoint runs in this process;
    verified by finding every planted user with the id the server returned.
    """
    backend = _iam_backend(account_id)
    if backend is None:
        return False
    planted = {name: backend.users.get(name) for name in users}
    if any(u is None or u.id != users[name]["user_id"] for name, u in planted.items()):
        return False
    for name, (_, days) in _AGES.items():
        user = planted[name]
        delta = timedelta(days=days)
        user.create_date -= delta  # also moto's login profile creation date
        for key in user.access_keys:
            key.create_date -= delta
    return True


def _root_row_in_process(account_id: str, *, mfa: bool, used_days_ago: int | None) -> bool:
    """Give moto's credential report of ``account_id`` the ``<root_account>`` row."""
    backend = _iam_backend(account_id)
    if backend is None:
        return False
    used = ("no_information" if used_days_ago is None else
            (datetime.now(UTC) - timedelta(days=used_days_ago)).replace(microsecond=0)
            .isoformat())
    row = ",".join([
        "<root_account>", f"arn:aws:iam::{account_id}:root", "2020-01-06T09:00:00+00:00",
        "not_supported", used, "not_supported", "not_supported", "true" if mfa else "false",
        "false", "N/A", "N/A", "N/A", "N/A", "false", "N/A", "N/A", "N/A", "N/A",
        "false", "N/A", "false", "N/A",
    ]) + "\n"
    report = type(backend).get_credential_report

    def with_root() -> str:
        header, _, rows = report(backend).partition("\n")
        return f"{header}\n{row}{rows}"

    backend.get_credential_report = with_root  # the fake's state, as _age_in_process
    return True


# --- what moto lacks ---------------------------------------------------------------------


def ensure_moto_gaps(endpoint_url: str) -> str:
    """The endpoint of the operations moto lacks: the environment's, or a fake started now.

    The fake (:mod:`annexa_demo.aws.fakes`) runs on 127.0.0.1 for the life of the
    process and forwards every other request of its services to ``endpoint_url``. The
    standard per-service endpoint variables and ``NO_PROXY`` are set so that boto3 (ours
    and the connector's) reaches it directly even where an HTTP proxy is set.
    """
    from annexa_demo.aws.fakes import ENDPOINT_VARIABLES, MotoGapsFake

    if all(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return os.environ[ANALYZER_ENV]
    fake = MotoGapsFake(upstream=endpoint_url)
    url = fake.start()
    for name in ENDPOINT_VARIABLES:
        os.environ[name] = url
    no_proxy = [x for x in os.environ.get("NO_PROXY", "").split(",") if x]
    os.environ["NO_PROXY"] = ",".join([*no_proxy, fake.netloc])
    return url


# --- seeding ---------------------------------------------------------------------------

_FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _assumed(endpoint_url: str, main: _Estate, account_id: str, role: str) -> _Estate:
    creds = main.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/{role}", RoleSessionName="annexa-seed"
    )["Credentials"]
    return _Estate(endpoint_url, {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }, account_id)


def _age_main(p: _Plan) -> bool:
    """Age the main plan's credentials (see :func:`_age_in_process`) and expect it."""
    if not _age_in_process(p.account_id, p.users):
        return False
    p.bad("aws.iam.access_key_rotated", p.users["dave-legacy"]["arn"])
    p.bad("aws.iam.credentials_unused", p.users["dave-legacy"]["arn"],
          p.users["erin-dormant"]["arn"])
    return True


def _describe(p: _Plan, name: str, role_arn: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "role_arn": role_arn,
        "users": {n: u["arn"] for n, u in p.users.items()},
        "fail": {k: sorted(v) for k, v in p.fail.items()},
    }


def _finish(p: _Plan, in_process: bool) -> bool:
    if p.root is None:
        return in_process
    return _root_row_in_process(p.account_id, **p.root) and in_process


def seed_demo_estate(endpoint_url: str, *, age_credentials: bool = True) -> dict[str, Any]:
    """Plant the demo estate in the (fresh) moto server at ``endpoint_url``.

    Returns ``{"endpoint_url", "regions", "aged", "ages_days", "accounts": {account id:
    {"name", "role_arn", "users", "fail": {check id: [resource ids expected to fail]}}}}``.
    Secrets of the planted access keys are not returned.
    """
    ensure_moto_gaps(endpoint_url)
    main = _Estate(endpoint_url, _FAKE_CREDENTIALS, MAIN_ACCOUNT)
    main.account_id = main.client("sts").get_caller_identity()["Account"]
    main_plan = _Plan(main)
    _plant_main(main_plan)
    services.standalone(main_plan)

    secure_plan = _Plan(_assumed(endpoint_url, main, SECURE_ACCOUNT, AUDIT_ROLE))
    _plant_secure(secure_plan)
    # the secure account manages an organisation of its own, with a development account
    owner = {"owner": "platform-team"}
    services.organization(secure_plan, {
        SECURE_ACCOUNT: ({**owner, "environment": "production"}, None),
        "new:annexa-secure-dev": ({**owner, "environment": "development"}, "non-production"),
    }, create=True)

    aged = age_credentials and _age_main(main_plan)
    in_process = _finish(main_plan, aged) and _finish(secure_plan, aged)
    return {
        "endpoint_url": endpoint_url,
        "regions": list(REGIONS),
        "aged": in_process,
        "ages_days": {name: days for name, (_, days) in _AGES.items()} if aged else {},
        "accounts": {
            main.account_id: _describe(main_plan, "main", None),
            SECURE_ACCOUNT: _describe(secure_plan, "secure", SECURE_ROLE_ARN),
        },
    }


def seed_org_estate(endpoint_url: str) -> dict[str, Any]:
    """Plant an AWS Organization: the main account as management account (the demo's
    *main* plan) and three members reached through the role
    ``annexa-audit``: *secure*, *weak* and *secure-with-flaws*.

    Returns ``{"endpoint_url", "regions", "aged", "management", "role_name",
    "accounts": {account id: {"name", "role_arn", "users", "fail"}}}``.
    """
    ensure_moto_gaps(endpoint_url)
    main = _Estate(endpoint_url, _FAKE_CREDENTIALS, MAIN_ACCOUNT)
    main.account_id = main.client("sts").get_caller_identity()["Account"]
    org = main.client("organizations")
    org.create_organization(FeatureSet="ALL")
    members = {}
    for name in ("secure", "weak", "flawed"):
        # the weak account's IAM starts with AWS managed policies loaded (about a second
        # of moto's time), so that AdministratorAccess can be attached there
        with _moto_setting("MOTO_IAM_LOAD_MANAGED_POLICIES", "true", enabled=name == "weak"):
            status = org.create_account(Email=f"{name}@example.com", AccountName=name,
                                        RoleName=AUDIT_ROLE)["CreateAccountStatus"]
        members[name] = status["AccountId"]

    plans = {"management": _Plan(main)}
    _plant_main(plans["management"])
    for name, account_id in members.items():
        plan = _Plan(_assumed(endpoint_url, main, account_id, AUDIT_ROLE), f"-{account_id}")
        plans[name] = plan
        if name == "weak":
            _plant_weak(plan)
        else:
            _plant_secure(plan, flaws=name == "flawed")
    owner = {"owner": "platform-team"}
    services.organization(plans["management"], {
        main.account_id: ({**owner, "environment": "production"}, None),
        members["secure"]: ({**owner, "environment": "production"}, "production"),
        members["flawed"]: ({**owner, "environment": "development"}, None),  # no OU
        members["weak"]: ({"environment": "sandbox"}, None),  # no owner, no OU
    }, create=False)
    aged = _age_main(plans["management"])
    in_process = all([_finish(p, aged) for p in plans.values()])
    return {
        "endpoint_url": endpoint_url,
        "regions": list(REGIONS),
        "aged": in_process,
        "management": main.account_id,
        "role_name": AUDIT_ROLE,
        "accounts": {
            p.account_id: _describe(
                p, name, None if name == "management"
                else f"arn:aws:iam::{p.account_id}:role/{AUDIT_ROLE}")
            for name, p in plans.items()
        },
    }
