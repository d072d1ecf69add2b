"""Benchmark: the AWS connector over an organisation of N resources served by moto.

    python benchmarks/aws_estate.py [--sizes 1000 10000] [--workers 16] [--plant-threads 8]

For each N, in this order and each in its own process:

1. a moto server (``ThreadedMotoServer``) is started in a child process, so its state,
   which grows with N, is not counted against the connector;
2. this process plants the estate through boto3: an AWS Organization of a management
   account and three members (role ``annexa-audit``), two regions, and N resources
   spread over accounts, regions and services — IAM users 10 %, S3 buckets 10 %,
   security groups 20 %, EBS volumes 20 %, CloudWatch log groups 20 %, KMS keys 15 %,
   RDS instances 5 % (deterministic: resource ``i`` goes to account ``i % 4`` and region
   ``i % 2``);
3. a fresh collector child runs the connector in organisation mode through the real
   run engine (``collector.runner.run_connector``: checks, mappings, the batched
   change-only writer) into a new SQLite file, and reports its wall time, the API calls
   it made (counted by the connector's own botocore ``before-call`` hook), the records
   stored, and its peak RSS (``VmHWM``).

Figures: wall time, API calls per resource, resources/s and peak RSS per N, with the
ratio of each to the smallest N. Targets: time grows no faster than N (time ratio ≤ N
ratio) and peak RSS at 10,000 within 1.2x of 1,000.

The Access Analyzer fake (moto has none) runs in this process; the collector child
reaches it through ``AWS_ENDPOINT_URL_ACCESSANALYZER``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.measure import peak_rss_mb  # noqa: E402 - after the path fix

REGIONS = ("us-east-1", "eu-west-1")
ROLE = "annexa-audit"
MIX = (  # (kind, share of N)
    ("iam_user", 0.10),
    ("bucket", 0.10),
    ("security_group", 0.20),
    ("volume", 0.20),
    ("log_group", 0.20),
    ("kms_key", 0.15),
    ("db_instance", 0.05),
)
TARGET_RSS_RATIO = 1.2
RESULTS = ROOT / "benchmarks" / "results" / "aws_estate.json"




def clean_env(moto_url: str) -> dict[str, str]:
    """The environment of the planter and the collector: moto only, never real AWS."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and k.lower() not in
           ("http_proxy", "https_proxy", "no_proxy", "all_proxy")}
    env.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=moto_url,
        AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        # S3 Control puts the account id in the host; moto routes proxied requests
        HTTP_PROXY=moto_url, HTTPS_PROXY=moto_url,
    )
    return env


# -- moto in its own process --------------------------------------------------------------

_MOTO = """
import os, sys, threading
os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the parent closes our stdin
server.stop()
"""


@contextmanager
def moto_process() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-c", _MOTO], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- planting -------------------------------------------------------------------------------


class Planter:
    """Plants N resources into the moto server at ``url`` with a few threads."""

    def __init__(self, url: str) -> None:
        import boto3
        from botocore.config import Config

        self.boto3 = boto3
        self.url = url
        self.config = Config(retries={"mode": "standard", "max_attempts": 3},
                             max_pool_connections=32)
        self.local = threading.local()
        self.creds: list[dict[str, str]] = []
        self.accounts: list[str] = []

    def client(self, service: str, account: int, region: str) -> Any:
        cache = getattr(self.local, "clients", None)
        if cache is None:
            cache = self.local.clients = {}
        key = (service, account, region)
        if key not in cache:
            cache[key] = self.boto3.client(service, endpoint_url=self.url, region_name=region,
                                           config=self.config, **self.creds[account])
        return cache[key]

    def organisation(self) -> None:
        base = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        self.creds = [base]
        main = self.boto3.client("organizations", endpoint_url=self.url,
                                 region_name="us-east-1", **base)
        sts = self.boto3.client("sts", endpoint_url=self.url, region_name="us-east-1", **base)
        self.accounts = [sts.get_caller_identity()["Account"]]
        main.create_organization(FeatureSet="ALL")
        for i in range(3):
            account = main.create_account(Email=f"m{i}@example.com", AccountName=f"m{i}",
                                          RoleName=ROLE)["CreateAccountStatus"]["AccountId"]
            c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{ROLE}",
                                RoleSessionName="plant")["Credentials"]
            self.accounts.append(account)
            self.creds.append({"aws_access_key_id": c["AccessKeyId"],
                               "aws_secret_access_key": c["SecretAccessKey"],
                               "aws_session_token": c["SessionToken"]})

    def plant(self, kind: str, i: int) -> None:
        account, region = i % len(self.accounts), REGIONS[(i // len(self.accounts)) % 2]
        name = f"bench-{kind.replace('_', '-')}-{i:06d}"
        if kind == "iam_user":
            self.client("iam", account, "us-east-1").create_user(UserName=name)
        elif kind == "bucket":
            s3 = self.client("s3", account, region)
            extra = ({} if region == "us-east-1"
                     else {"CreateBucketConfiguration": {"LocationConstraint": region}})
            s3.create_bucket(Bucket=name, **extra)
        elif kind == "security_group":
            ec2 = self.client("ec2", account, region)
            group = ec2.create_security_group(GroupName=name, Description=name)["GroupId"]
            port = (22, 443, 3389, 8080)[i % 4]
            ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[{
                "IpProtocol": "tcp", "FromPort": port, "ToPort": port,
                "IpRanges": [{"CidrIp": "0.0.0.0/0" if i % 3 == 0 else "10.0.0.0/8"}]}])
        elif kind == "volume":
            self.client("ec2", account, region).create_volume(
                AvailabilityZone=f"{region}a", Size=1, Encrypted=i % 2 == 0)
        elif kind == "log_group":
            logs = self.client("logs", account, region)
            logs.create_log_group(logGroupName=name)
            if i % 2:
                logs.put_retention_policy(logGroupName=name, retentionInDays=30)
        elif kind == "kms_key":
            kms = self.client("kms", account, region)
            key = kms.create_key(Description=name)["KeyMetadata"]["KeyId"]
            if i % 2:
                kms.enable_key_rotation(KeyId=key)
        elif kind == "db_instance":
            self.client("rds", account, region).create_db_instance(
                DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres",
                MasterUsername="bench", MasterUserPassword="Bench-password-1",
                AllocatedStorage=20, StorageEncrypted=i % 2 == 0, PubliclyAccessible=False)
        else:  # pragma: no cover
            raise ValueError(kind)


def plan(n: int) -> list[tuple[str, int]]:
    """(kind, index) of every resource; counts per kind sum to exactly ``n``."""
    out: list[tuple[str, int]] = []
    for kind, share in MIX[:-1]:
        out += [(kind, len(out) + j) for j in range(round(n * share))]
    out += [(MIX[-1][0], len(out) + j) for j in range(n - len(out))]
    return out


def plant_estate(url: str, n: int, threads: int) -> dict[str, int]:
    planter = Planter(url)
    planter.organisation()
    work = plan(n)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda item: planter.plant(*item), work))
    counts: dict[str, int] = {}
    for kind, _ in work:
        counts[kind] = counts.get(kind, 0) + 1
    return counts


# -- the collector child --------------------------------------------------------------------


def collect_child(n: int, workers: int) -> dict[str, Any]:
    """Run the connector through the real run engine into a new SQLite file."""
    from collector.config import AnnexaConfig, ConnectorConfig, LoadedConnector, Settings
    from collector.logs import configure_logging
    from collector.runner import run_connector
    from connectors.aws import AwsConnector, AwsOptions
    from mappings import load_mappings
    from store.engine import make_engine
    from store.migrate import upgrade

    configure_logging("json", "error")
    calls = {"n": 0}
    lock = threading.Lock()

    class Counting(set[str]):
        def add(self, item: str) -> None:
            with lock:
                calls["n"] += 1
            super().add(item)

    class CountingConnector(AwsConnector):
        """Counts every API call through the connector's own ``before-call`` hook."""

        @property  # type: ignore[override]
        def operations_called(self) -> set[str]:
            return self._ops

        @operations_called.setter
        def operations_called(self, value: set[str]) -> None:
            self._ops = Counting(value)

    options = {"regions": list(REGIONS), "organization": True, "member_role_name": ROLE,
               "max_workers": workers}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        model = AnnexaConfig(database={"url": url},
                             connectors=[ConnectorConfig(type="aws", name="bench",
                                                         options=options)])
        settings = Settings(model, None)
        cfg = model.connectors[0]
        loaded = LoadedConnector(cfg, CountingConnector, AwsOptions.model_validate(options))
        engine = make_engine(url)
        upgrade(engine)
        index = load_mappings()
        start = time.perf_counter()
        summary = run_connector(settings, loaded, engine, index)
        wall = time.perf_counter() - start
        engine.dispose()
    return {
        "n": n,
        "wall_s": wall,
        "api_calls": calls["n"],
        "status": summary.status,
        "errors": summary.errors[:5],
        "evidence": summary.counts["evidence_seen"],
        "findings": summary.counts["findings_seen"],
        "peak_rss_mb": peak_rss_mb(),
    }


# -- driver -------------------------------------------------------------------------------


def run_size(n: int, workers: int, plant_threads: int, analyzer_url: str) -> dict[str, Any]:
    with moto_process() as url:
        env = clean_env(url)
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            start = time.perf_counter()
            counts = plant_estate(url, n, plant_threads)
            plant_s = time.perf_counter() - start
        finally:
            os.environ.clear()
            os.environ.update(saved)
        child_env = {**env, "AWS_ENDPOINT_URL_ACCESSANALYZER": analyzer_url,
                     "NO_PROXY": analyzer_url.split("//", 1)[1],
                     "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(n), "--workers", str(workers)],
            env=child_env, capture_output=True, text=True, timeout=3600, check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"collector child failed:\n{proc.stderr[-4000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(plant_s=plant_s, planted=counts)
    return result


def report(results: list[dict[str, Any]]) -> str:
    base = results[0]
    lines = [
        f"{'N':>7} {'wall s':>8} {'API calls':>10} {'calls/res':>9} {'res/s':>8} "
        f"{'peak RSS MB':>11} {'N ratio':>8} {'time ratio':>10} {'RSS ratio':>9} "
        f"{'evidence':>9} {'findings':>9} {'status':>9}",
    ]
    for r in results:
        lines.append(
            f"{r['n']:>7} {r['wall_s']:>8.1f} {r['api_calls']:>10} "
            f"{r['api_calls'] / r['n']:>9.2f} {r['n'] / r['wall_s']:>8.0f} "
            f"{r['peak_rss_mb']:>11.1f} {r['n'] / base['n']:>8.1f} "
            f"{r['wall_s'] / base['wall_s']:>10.2f} {r['peak_rss_mb'] / base['peak_rss_mb']:>9.2f} "
            f"{r['evidence']:>9} {r['findings']:>9} {r['status']:>9}"
        )
    last = results[-1]
    n_ratio = last["n"] / base["n"]
    time_ok = last["wall_s"] / base["wall_s"] <= n_ratio
    rss_ok = last["peak_rss_mb"] / base["peak_rss_mb"] <= TARGET_RSS_RATIO
    lines.append(f"time grows no faster than N: {'yes' if time_ok else 'NO'}; peak RSS "
                 f"within {TARGET_RSS_RATIO}x: {'yes' if rss_ok else 'NO'}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--workers", type=int, default=16, help="connector max_workers")
    ap.add_argument("--plant-threads", type=int, default=8)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(collect_child(args.child, args.workers)))
        return 0

    from annexa_demo.aws.fakes import AccessAnalyzerFake

    analyzer = AccessAnalyzerFake()
    analyzer_url = analyzer.start()
    results = []
    try:
        for n in sorted(args.sizes):
            print(f"N={n}: planting and collecting…", file=sys.stderr, flush=True)
            result = run_size(n, args.workers, args.plant_threads, analyzer_url)
            print(f"  planted in {result['plant_s']:.0f} s, collected in "
                  f"{result['wall_s']:.1f} s", file=sys.stderr, flush=True)
            results.append(result)
    finally:
        analyzer.stop()
    text = report(results)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "workers": args.workers,
        "results": results,
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
