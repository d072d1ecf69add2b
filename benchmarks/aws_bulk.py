"""Benchmark: AWS calls per S3 bucket, direct reads vs an AWS Config aggregator.

    python benchmarks/aws_bulk.py [--buckets 50 200] [--workers 8]

For each N: a fresh moto server (``ThreadedMotoServer``, in this process) holds N
buckets of one account with mixed configuration (default encryption, public access
block, policy, versioning, logging on some of them), and an AWS Config aggregator over
the account; ``SelectAggregateResourceConfig`` (which moto lacks) is answered by the
fake of tests/aws_config_fake.py from the same buckets. The aws connector (``services =
["s3"]``) collects the account twice in this process — ``inventory = "direct"`` (the
baseline) and ``inventory = "config_aggregator"`` — every request but AWS Config's
passing through the counting proxy of tests/aws_fixtures.py, so that:

* calls are counted on the wire: in total, and per bucket (the advanced queries, at
  ``Limit=100``, included in the bulk figure);
* both modes' evidence is compared (content hashes: ``same``);
* wall time of each collect and the ratio bulk/direct (same run, same machine).

Calls are exact counts; times are indicative only (a loaded machine, a Python fake).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

AGGREGATOR = "bench"


def isolate(moto_url: str, tmp: str) -> None:
    """This process talks to moto only: no profile, credentials or proxy of the machine."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name.lower() in ("http_proxy", "https_proxy",
                                                       "no_proxy", "all_proxy"):
            del os.environ[name]
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto_url,
        "AWS_CONFIG_FILE": f"{tmp}/none", "AWS_SHARED_CREDENTIALS_FILE": f"{tmp}/none",
        "AWS_EC2_METADATA_DISABLED": "true"})


def plant(moto_url: str, n: int) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    s3.create_bucket(Bucket="bench-logs")
    s3.put_bucket_acl(Bucket="bench-logs", ACL="log-delivery-write")
    for i in range(n):
        name = f"bench-bucket-{i:05d}"
        s3.create_bucket(Bucket=name)
        if i % 2:
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        if i % 3:
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
                "BlockPublicAcls": True, "IgnorePublicAcls": True,
                "BlockPublicPolicy": i % 5 != 0, "RestrictPublicBuckets": True})
        if i % 4 == 0:
            s3.put_bucket_policy(Bucket=name, Policy=json.dumps({
                "Version": "2012-10-17", "Statement": [{
                    "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*",
                    "Action": "s3:*", "Resource": f"arn:aws:s3:::{name}/*",
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}))
        if i % 5 == 0:
            s3.put_bucket_versioning(Bucket=name,
                                     VersioningConfiguration={"Status": "Enabled"})
        if i % 7 == 0:
            s3.put_bucket_logging(Bucket=name, BucketLoggingStatus={"LoggingEnabled": {
                "TargetBucket": "bench-logs", "TargetPrefix": f"{name}/"}})
    boto3.client("config", endpoint_url=moto_url, region_name="us-east-1") \
        .put_configuration_aggregator(
            ConfigurationAggregatorName=AGGREGATOR,
            AccountAggregationSources=[{"AccountIds": ["123456789012"],
                                        "AllAwsRegions": True}])


def collect(mode: str, workers: int) -> tuple[dict[str, str], float]:
    from connectors.aws import AwsConnector, AwsOptions
    from core.connector import CollectContext
    from core.records import Evidence

    extra = {"inventory": mode, "config_aggregator_name": AGGREGATOR} \
        if mode != "direct" else {}
    c = AwsConnector(f"bench-{mode}", AwsOptions.model_validate({
        "services": ["s3"], "regions": ["us-east-1"], "max_workers": workers, **extra}))
    t0 = time.perf_counter()
    hashes = {r.key: r.content_hash() for r in c.collect(CollectContext(run_id="bench"))
              if isinstance(r, Evidence)}
    return hashes, time.perf_counter() - t0


def one(n: int, workers: int) -> dict[str, Any]:
    from moto.server import ThreadedMotoServer

    from tests.aws_config_fake import ConfigSelectFake
    from tests.aws_fixtures import FaultProxy, serve_proxy

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    fake = ConfigSelectFake(upstream=moto_url)
    fake.start()
    proxy = FaultProxy(upstream=moto_url)
    httpd = serve_proxy(proxy)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            isolate(moto_url, tmp)
            plant(moto_url, n)
            os.environ.update({"AWS_ENDPOINT_URL_CONFIG_SERVICE": fake.url,
                               "HTTP_PROXY": proxy.url, "http_proxy": proxy.url,
                               "NO_PROXY": fake.url.split("//")[1]})
            os.environ["no_proxy"] = os.environ["NO_PROXY"]
            out: dict[str, Any] = {"buckets": n + 1}
            for mode in ("direct", "config_aggregator"):
                proxy.seen.clear()
                fake.requests.clear()
                hashes, seconds = collect(mode, workers)
                out[mode] = {"calls": len(proxy.seen) + len(fake.requests),
                             "queries": len(fake.requests), "seconds": seconds,
                             "hashes": hashes}
            return out
    finally:
        httpd.shutdown()
        httpd.server_close()
        fake.stop()
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--buckets", type=int, nargs="+", default=[50, 200])
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    import logging

    import structlog

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    print(f"load average {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs")
    print(f"{'buckets':>7} | {'direct calls':>12} {'per bkt':>7} | {'bulk calls':>10} "
          f"{'queries':>7} {'per bkt':>7} | {'calls ratio':>11} | {'same':>4} "
          f"{'t direct':>8} {'t bulk':>7} {'t ratio':>7}")
    for n in args.buckets:
        r = one(n, args.workers)
        d, b, k = r["direct"], r["config_aggregator"], r["buckets"]
        print(f"{k:>7} | {d['calls']:>12} {d['calls'] / k:>7.2f} | {b['calls']:>10} "
              f"{b['queries']:>7} {b['calls'] / k:>7.2f} | "
              f"{b['calls'] / d['calls']:>11.2f} | {d['hashes'] == b['hashes']!s:>4} "
              f"{d['seconds']:>7.2f}s {b['seconds']:>6.2f}s "
              f"{b['seconds'] / d['seconds']:>7.2f}")


if __name__ == "__main__":
    main()
