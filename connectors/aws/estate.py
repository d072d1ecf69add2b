"""A small simulated AWS estate, planted through boto3 into a fresh moto server.

Used by ``annexa demo`` and by the connector tests. Two accounts:

* the *main* account (the caller's, 123456789012 in moto): a weak password policy,
  console users with and without MFA, fresh, old, unused and inactive access keys,
  buckets with and without encryption and public access block, no account-level
  public access block, a multi-region trail that is not logging, a trail without log
  file validation, EBS encryption by default on in one region only;
* the *secure* account (210987654321, reached by assuming a role): everything right.

So every check has resources that pass and resources that fail somewhere.
:func:`seed_demo_estate` returns what was planted and, per account and check id, the
resource ids expected to fail (with the checks' default parameters).

moto has no API to set creation or last-use dates. When the moto server runs in this
process (``ThreadedMotoServer``, as in ``annexa demo`` and the tests), the credentials
that should look old are aged by editing moto's in-memory state directly; otherwise
they stay fresh and the description says so (``"aged": false``).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import boto3
from botocore.config import Config

MAIN_ACCOUNT = "123456789012"
SECURE_ACCOUNT = "210987654321"
SECURE_ROLE_ARN = f"arn:aws:iam::{SECURE_ACCOUNT}:role/annexa-audit"
REGIONS = ("us-east-1", "eu-west-1")
HOME = "us-east-1"

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

#: Days to age each credential of the main account by (user → (what, days)).
_AGES = {
    "dave-legacy": ("access key and user", 200),  # old, never-used active key
    "erin-dormant": ("user and console password", 100),  # console, never signed in
    "grace-former": ("inactive access key and user", 300),
}


class _Estate:
    """boto3 clients for one account of the moto server."""

    def __init__(self, endpoint_url: str, credentials: dict[str, str]) -> None:
        self.endpoint_url = endpoint_url
        self.credentials = credentials

    def client(self, service: str, region: str = HOME) -> Any:
        config = Config(retries={"mode": "standard", "max_attempts": 2})
        if service == "s3control":
            # S3 Control prefixes the account id to the endpoint host
            # (123456789012.127.0.0.1), which does not resolve; moto also serves as an
            # HTTP proxy and routes such requests itself.
            config = config.merge(
                Config(proxies={"http": self.endpoint_url, "https": self.endpoint_url})
            )
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=region,
            config=config,
            **self.credentials,
        )


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


def _bucket(
    estate: _Estate,
    name: str,
    *,
    region: str = HOME,
    encryption: dict[str, Any] | None = None,
    block: dict[str, bool] | None = None,
) -> None:
    s3 = estate.client("s3", region)
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    if encryption:
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=encryption)
    if block:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)


def _trail(
    estate: _Estate,
    name: str,
    bucket: str,
    *,
    region: str = HOME,
    multi_region: bool,
    validation: bool,
    logging: bool,
) -> str:
    cloudtrail = estate.client("cloudtrail", region)
    arn = cloudtrail.create_trail(
        Name=name,
        S3BucketName=bucket,
        IsMultiRegionTrail=multi_region,
        EnableLogFileValidation=validation,
    )["TrailARN"]
    if logging:
        cloudtrail.start_logging(Name=name)
    return arn


def _plant_main(estate: _Estate, account_id: str) -> dict[str, Any]:
    iam = estate.client("iam")
    iam.update_account_password_policy(
        MinimumPasswordLength=8,
        RequireSymbols=False,
        RequireNumbers=True,
        RequireUppercaseCharacters=True,
        RequireLowercaseCharacters=True,
    )
    users = {
        "alice-admin": _user(iam, "alice-admin", console=True, mfa=True),
        "bob-console": _user(iam, "bob-console", console=True),
        "carol-ci": _user(iam, "carol-ci", key="Active"),
        "dave-legacy": _user(iam, "dave-legacy", key="Active"),
        "erin-dormant": _user(iam, "erin-dormant", console=True, mfa=True),
        "frank-nocreds": _user(iam, "frank-nocreds"),
        "grace-former": _user(iam, "grace-former", key="Inactive"),
    }
    _use_key(estate, users["carol-ci"]["key"])

    _bucket(estate, "annexa-demo-logs", encryption=_SSE_S3, block=_ALL_BLOCKED)
    _bucket(estate, "annexa-demo-unencrypted", block=_ALL_BLOCKED)
    _bucket(
        estate,
        "annexa-demo-public",
        encryption=_SSE_KMS,
        block={**_ALL_BLOCKED, "BlockPublicPolicy": False, "RestrictPublicBuckets": False},
    )
    _bucket(estate, "annexa-demo-eu-data", region="eu-west-1", encryption=_SSE_S3)

    trails = {
        "org-wide": _trail(estate, "annexa-demo-org-wide", "annexa-demo-logs",
                           multi_region=True, validation=True, logging=False),
        "app": _trail(estate, "annexa-demo-app", "annexa-demo-logs",
                      multi_region=False, validation=False, logging=True),
        "eu": _trail(estate, "annexa-demo-eu", "annexa-demo-eu-data", region="eu-west-1",
                     multi_region=False, validation=True, logging=True),
    }
    estate.client("ec2", "us-east-1").enable_ebs_encryption_by_default()

    arn = {name: u["arn"] for name, u in users.items()}
    return {
        "users": users,
        "fail": {
            "aws.iam.password_policy_min_length": [account_id],
            "aws.iam.password_policy_reuse": [account_id],
            "aws.iam.password_policy_complexity": [account_id],
            "aws.iam.user_console_mfa": [arn["bob-console"]],
            # access_key_rotated / credentials_unused: filled in once aged
            "aws.iam.access_key_rotated": [],
            "aws.iam.credentials_unused": [],
            "aws.iam.root_access_keys": [],  # moto cannot give the root user keys
            "aws.s3.bucket_default_encryption": ["annexa-demo-unencrypted"],
            "aws.s3.bucket_public_access_block": ["annexa-demo-eu-data", "annexa-demo-public"],
            "aws.s3control.account_public_access_block": [account_id],
            "aws.cloudtrail.multi_region_logging": [account_id],
            "aws.cloudtrail.log_file_validation": [trails["app"]],
            "aws.ec2.ebs_default_encryption": ["eu-west-1"],
        },
        "aged_fail": {
            "aws.iam.access_key_rotated": [arn["dave-legacy"]],
            "aws.iam.credentials_unused": [arn["dave-legacy"], arn["erin-dormant"]],
        },
    }


def _plant_secure(estate: _Estate, account_id: str) -> dict[str, Any]:
    iam = estate.client("iam")
    iam.update_account_password_policy(
        MinimumPasswordLength=16,
        RequireSymbols=True,
        RequireNumbers=True,
        RequireUppercaseCharacters=True,
        RequireLowercaseCharacters=True,
        PasswordReusePrevention=24,
    )
    users = {
        "ops-admin": _user(iam, "ops-admin", console=True, mfa=True),
        "ci-deployer": _user(iam, "ci-deployer", key="Active"),
    }
    _use_key(estate, users["ci-deployer"]["key"])
    _bucket(estate, "annexa-demo-secure-archive", encryption=_SSE_KMS, block=_ALL_BLOCKED)
    estate.client("s3control").put_public_access_block(
        AccountId=account_id, PublicAccessBlockConfiguration=_ALL_BLOCKED
    )
    _trail(estate, "annexa-demo-secure-trail", "annexa-demo-secure-archive",
           multi_region=True, validation=True, logging=True)
    for region in REGIONS:
        estate.client("ec2", region).enable_ebs_encryption_by_default()
    return {"users": users, "fail": {}}


def _age_in_process(account_id: str, users: dict[str, dict[str, Any]]) -> bool:
    """Backdate the main account's credentials in moto's in-memory state.

    Only possible when the moto server serving the endpoint runs in this process;
    verified by finding every planted user with the id the server returned.
    """
    try:
        from moto.iam.models import iam_backends
    except ImportError:
        return False
    if account_id not in list(iam_backends.keys()):
        return False
    backend = dict.get(iam_backends[account_id], "aws")
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


def seed_demo_estate(endpoint_url: str, *, age_credentials: bool = True) -> dict[str, Any]:
    """Plant the demo estate in the (fresh) moto server at ``endpoint_url``.

    Returns ``{"endpoint_url", "regions", "aged", "accounts": {account id: {"name",
    "role_arn", "users", "fail": {check id: [resource ids expected to fail]}}}}``.
    Secrets of the planted access keys are not returned.
    """
    fake = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    main = _Estate(endpoint_url, fake)
    main_id = main.client("sts").get_caller_identity()["Account"]
    main_plan = _plant_main(main, main_id)

    creds = main.client("sts").assume_role(
        RoleArn=SECURE_ROLE_ARN, RoleSessionName="annexa-demo-seed"
    )["Credentials"]
    secure = _Estate(
        endpoint_url,
        {
            "aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"],
        },
    )
    secure_plan = _plant_secure(secure, SECURE_ACCOUNT)

    aged = age_credentials and _age_in_process(main_id, main_plan["users"])
    main_fail = dict(main_plan["fail"])
    if aged:
        main_fail.update(main_plan["aged_fail"])

    def public_users(users: dict[str, dict[str, Any]]) -> dict[str, str]:
        return {name: u["arn"] for name, u in users.items()}

    return {
        "endpoint_url": endpoint_url,
        "regions": list(REGIONS),
        "aged": aged,
        "ages_days": {name: days for name, (_, days) in _AGES.items()} if aged else {},
        "accounts": {
            main_id: {
                "name": "main",
                "role_arn": None,
                "users": public_users(main_plan["users"]),
                "fail": {k: sorted(v) for k, v in main_fail.items()},
            },
            SECURE_ACCOUNT: {
                "name": "secure",
                "role_arn": SECURE_ROLE_ARN,
                "users": public_users(secure_plan["users"]),
                "fail": {},
            },
        },
    }
