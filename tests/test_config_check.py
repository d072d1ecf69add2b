"""`annexa config check [--connect]` and the static check `collect` runs first (issue 18).

* An unset secret: `config check` and `collect` exit 2 and nothing is written.
* `--connect` against a moto server that enforces IAM (moto's
  ``/moto-api/reset-auth``; the principal's policy leaves out iam:GetAccountSummary)
  names that permission; against a fake Okta org whose policies endpoint answers 403
  ``E0000006`` (Okta's documented "You do not have permission to perform the requested
  action" error, https://developer.okta.com/docs/reference/error-codes/), names the
  scope ``okta.policies.read``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

REPO = Path(__file__).resolve().parent.parent


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ANNEXA_", "AWS_", "OKTA_")) and k.lower() not in
           ("http_proxy", "https_proxy", "no_proxy")}
    env |= {
        "PYTHONPATH": str(REPO),
        "AWS_CONFIG_FILE": str(tmp / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    return env | extra


def annexa(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector", *args], cwd=tmp,
                          env=_env(tmp, **env), capture_output=True, text=True, timeout=300)


def test_unset_secret_is_exit_2_before_anything_is_written(tmp_path):
    cfg = tmp_path / "annexa.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "annexa.db"}"\n\n'
        '[[connectors]]\ntype = "okta"\nname = "okta"\n[connectors.options]\n'
        'org_url = "https://example.okta.com"\napi_token = { env = "OKTA_TOKEN_FOR_TEST" }\n'
    )
    check = annexa(tmp_path, "config", "check", "-c", str(cfg))
    assert check.returncode == 2, check.stdout + check.stderr
    line = next(x for x in check.stdout.splitlines() if x.startswith("FAIL"))
    assert "OKTA_TOKEN_FOR_TEST" in line and "is not set" in line
    collect = annexa(tmp_path, "collect", "-c", str(cfg))
    assert collect.returncode == 2, collect.stderr
    assert "OKTA_TOKEN_FOR_TEST is not set" in collect.stderr
    assert "nothing collected" in collect.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annexa.toml"]
    # With the variable set, the static part passes (no network needed).
    ok = annexa(tmp_path, "config", "check", "-c", str(cfg), OKTA_TOKEN_FOR_TEST="t0ken")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "t0ken" not in ok.stdout + ok.stderr


# -- --connect against moto with IAM enforced -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def enforcing_moto(tmp_path) -> Iterator[str]:
    """A moto server of its own (IAM enforcement is process-wide in moto)."""
    port = _free_port()
    env = _env(tmp_path, MOTO_EC2_LOAD_DEFAULT_AMIS="false")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.2)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _reader_with_one_permission_missing(url: str) -> tuple[str, str]:
    import boto3

    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    iam.create_user(UserName="annexa-reader")
    iam.put_user_policy(
        UserName="annexa-reader",
        PolicyName="read-but-not-iam-summary",
        PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                # "s3:List*": moto 5 does not match s3:ListAllMyBuckets alone.
                "Action": ["sts:GetCallerIdentity", "s3:List*",
                           "ec2:DescribeRegions", "cloudtrail:DescribeTrails"],
                "Resource": "*",
            }],
        }),
    )
    key = iam.create_access_key(UserName="annexa-reader")["AccessKey"]
    req = urllib.request.Request(f"{url}/moto-api/reset-auth", data=b"0", method="POST",
                                 headers={"Content-Type": "text/plain"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req) as resp:
        assert resp.status == 200
    return key["AccessKeyId"], key["SecretAccessKey"]


def _okta_fake(httpserver: HTTPServer) -> str:
    httpserver.no_handler_status_code = 418
    auth = {"Authorization": "SSWS okta-test-token"}
    httpserver.expect_request("/api/v1/users", headers=auth).respond_with_json([])
    httpserver.expect_request("/api/v1/policies", headers=auth).respond_with_json(
        {"errorCode": "E0000006",
         "errorSummary": "You do not have permission to perform the requested action",
         "errorLink": "E0000006", "errorId": "oae1", "errorCauses": []},
        status=403,
    )
    httpserver.expect_request("/api/v1/iam/assignees/users", headers=auth).respond_with_json(
        {"value": [], "_links": {}}
    )
    return httpserver.url_for("").rstrip("/")


def test_connect_names_the_missing_permission_of_each_source(tmp_path, enforcing_moto,
                                                              httpserver):
    key_id, secret = _reader_with_one_permission_missing(enforcing_moto)
    okta_url = _okta_fake(httpserver)
    cfg = tmp_path / "annexa.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "annexa.db"}"\n\n'
        '[[connectors]]\ntype = "aws"\nname = "prod"\n[connectors.options]\n'
        f'endpoint_url = "{enforcing_moto}"\nregions = ["us-east-1"]\n\n'
        '[[connectors]]\ntype = "okta"\nname = "okta"\n[connectors.options]\n'
        f'org_url = "{okta_url}"\napi_token = {{ env = "OKTA_TOKEN_FOR_TEST" }}\n'
        '[connectors.options.http]\nmax_attempts = 1\n'
    )
    proc = annexa(tmp_path, "config", "check", "--connect", "-c", str(cfg),
                  AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret,
                  OKTA_TOKEN_FOR_TEST="okta-test-token")
    out = proc.stdout
    assert proc.returncode == 2, out + proc.stderr

    def line(prefix: str) -> str:
        return next(x for x in out.splitlines() if x.startswith(prefix + ": "))

    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 2, out
    assert "missing permission iam:GetAccountSummary" in line("FAIL  prod: iam:GetAccountSummary")
    assert line("ok    prod: s3:ListAllMyBuckets").endswith("allowed")
    assert "account 123456789012" in line("ok    prod: sts:GetCallerIdentity")
    okta_fail = next(line for line in fails if "okta" in line)
    assert "okta.policies.read" in okta_fail and "HTTP 403" in okta_fail
    assert "ok    okta: GET /api/v1/users (okta.users.read)" in out
    assert not (tmp_path / "annexa.db").exists()  # config check writes nothing
