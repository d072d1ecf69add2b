"""End to end, the cases that change what the CLI reads: the estate edited between two
collections, and every AWS request passing through a proxy that throttles IAM.

Each test plants its own demo estate in a reset moto (``aws_env``); the read-only
cases share one estate in ``test_e2e_cli.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import boto3
import pytest

from annexa_demo.aws.estate import seed_demo_estate
from tests.test_e2e_cli import annexa, history_counts, json_out, write_config


@pytest.fixture
def estate(aws_env: str) -> dict[str, Any]:
    return seed_demo_estate(aws_env)


def test_unchanged_estate_adds_nothing_and_time_travel_works(
    estate: dict[str, Any], tmp_path: Path, db_url: str
) -> None:
    cfg = write_config(tmp_path, db_url)
    assert annexa("collect", "--config", str(cfg)).returncode == 0
    first = history_counts(db_url)
    runs = json_out(annexa("runs", "--config", str(cfg), "--format", "json"))
    first_instant = runs[0]["finished_at"]

    assert annexa("collect", "--config", str(cfg)).returncode == 0
    assert history_counts(db_url) == first  # only the run's own bookkeeping was added

    # Fix one bucket: only the rows of that change are added.
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.put_bucket_encryption(
        Bucket="annexa-demo-unencrypted",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    assert annexa("collect", "--config", str(cfg)).returncode == 0
    third = history_counts(db_url)
    assert third["evidence"] == first["evidence"] + 1
    # The bucket's findings cite the new evidence hash: one new version each.
    assert third["findings"] == first["findings"] + 2

    def encryption_statuses(*at: str) -> dict[str, str]:
        """``annexa findings`` of the default-encryption check (``--at`` when given)."""
        check = ("--check", "aws.s3.bucket_default_encryption", *at, "--format", "json")
        found = json_out(annexa("findings", "--config", str(cfg), *check))
        return {f["resource_id"]: f["status"] for f in found}

    now = encryption_statuses()
    then = encryption_statuses("--at", first_instant)
    assert now["annexa-demo-unencrypted"] == "pass"
    assert then["annexa-demo-unencrypted"] == "fail"
    at_first = {
        c["control"]: c
        for c in json_out(
            annexa("controls", "--config", str(cfg), "--at", first_instant, "--format", "json")
        )
    }
    assert (
        "annexa-demo-unencrypted (aws.s3.bucket_default_encryption)"
        in at_first["A.8.24"]["failing_resources"]
    )

    shown = json_out(
        annexa(
            "evidence",
            "show",
            "--config",
            str(cfg),
            "--resource",
            "annexa-demo-unencrypted",
            "--type",
            "aws.s3.bucket",
            "--at",
            first_instant,
            "--format",
            "json",
        )
    )
    assert len(shown) == 1 and "ServerSideEncryptionConfiguration" in json.dumps(
        shown[0]["payload"]
    )


def test_throttling_is_retried_then_recorded_as_error(
    estate: dict[str, Any], tmp_path: Path, db_url: str, aws_fault_proxy: Any
) -> None:
    aws_fault_proxy.fail(service="iam", code="Throttling", status=400)
    cfg = write_config(tmp_path, db_url, extra_options=", max_attempts = 3")
    proc = annexa(
        "collect",
        "--config",
        str(cfg),
        "--format",
        "json",
        env=dict(os.environ, AWS_ENDPOINT_URL=aws_fault_proxy.url),
    )
    assert aws_fault_proxy.count(service="iam") >= 3  # retried before giving up
    assert proc.returncode == 3, proc.stderr
    [run] = json.loads(proc.stdout)
    assert run["status"] == "partial"
    errs = json_out(
        annexa("findings", "--config", str(cfg), "--status", "error", "--format", "json")
    )
    assert errs and {f["check_id"].split(".")[1] for f in errs} == {"iam"}
    assert all("Throttling" in f["message"] for f in errs)
    # Everything else was stored and judged.
    s3 = json_out(
        annexa(
            "findings",
            "--config",
            str(cfg),
            "--check",
            "aws.s3.bucket_default_encryption",
            "--format",
            "json",
        )
    )
    assert s3 and {f["status"] for f in s3} <= {"pass", "fail"}
