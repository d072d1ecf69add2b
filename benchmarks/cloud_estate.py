"""Benchmark: the Azure and Google Cloud connectors against large local fakes.

    python benchmarks/cloud_estate.py [--sizes 2000 20000] [--clouds azure,gcp]
                                      [--workers 8] [--page-size 100] [--out FILE]

Estates: Azure = 100 subscriptions, Google Cloud = 300 projects (in an organisation →
10 folders), each with N resources spread over every resource type the connector reads
(storage accounts, NSGs, VMs, disks, key vaults, SQL servers + databases, Recovery
Services vaults + policies; buckets, firewall rules, subnets, Cloud SQL instances, KMS
keys, service accounts), plus the per-scope documents (Defender pricings, diagnostic
settings, locks; IAM policies, sinks, SCC services, networks). The fakes are the test
fakes (tests/azure_fixtures.py, tests/gcp_fixtures.py): real HTTP servers on 127.0.0.1
in this (parent) process, with ARM ``nextLink`` and Google ``pageToken`` paging.

For every cloud and N a **child process** runs one full ``collect`` (real connector,
real HTTP layer, checks evaluated on every evidence as the run engine does, nothing
stored), so its peak RSS (``VmHWM``) is that run's alone. Reported:

* resources/s (N / wall time of ``collect``), evidence/s, findings;
* requests per resource (requests the fake answered / N);
* peak RSS at each N, and the ratio largest/smallest N (target ≤ 1.2: memory flat in N);
* baselines measured in the same run: an *idle* child (imports, connector built, no
  collect) for RSS, and a *raw* child issuing as many plain ``httpx`` GETs of one small
  list endpoint as the connector made, on as many threads (the fake's capacity), so
  connector throughput reads as a fraction of what the fake can serve at all.

Results are printed; ``--out FILE`` also writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.measure import peak_rss_mb  # noqa: E402 - after the path fix

SUBSCRIPTIONS = 100
PROJECTS = 300
FOLDERS = 10
TARGET_RSS_RATIO = 1.2




# -- estates (parent) ---------------------------------------------------------------------


def azure_estate(n: int, page_size: int) -> Any:
    from tests import azure_fixtures as az

    fake = az.ArmFake(page_size=page_size, record=False)
    subs = [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(SUBSCRIPTIONS)]
    for k, sub in enumerate(subs):
        fake.add_subscription(sub, f"sub-{k}")
        fake.put_list(f"/subscriptions/{sub}/providers/Microsoft.Security/pricings",
                      az.pricings(sub, off=("Containers",) if k % 3 else ()))
        ws = az.rid(sub, "rg-log", "Microsoft.OperationalInsights/workspaces", "law")
        fake.put(ws, {"id": ws, "name": "law", "properties": {"retentionInDays": 90 + k}})
        fake.put_list(f"/subscriptions/{sub}/providers/Microsoft.Insights/diagnosticSettings",
                      [az.diag_setting("to-law", workspace=ws)])
        rg = f"/subscriptions/{sub}/resourceGroups"
        fake.put_list(f"/subscriptions/{sub}/providers/Microsoft.Authorization/locks",
                      [az.lock(f"{rg}/rg-sec", "sec"), az.lock(f"{rg}/rg-bcdr", "bcdr")])

    def p(sub: str, path: str) -> str:
        return f"/subscriptions/{sub}/providers/{path}"

    for i in range(n):
        sub = subs[i % SUBSCRIPTIONS]
        kind = (i // SUBSCRIPTIONS) % 20
        name = f"r{i}"
        if kind < 6 or kind == 18:
            fake.add(p(sub, "Microsoft.Storage/storageAccounts"),
                     az.storage_account(sub, name, https=i % 7 != 0, public=i % 11 == 0))
        elif kind < 10 or kind == 19:
            rules = [az.nsg_rule("https", 100, "443"),
                     az.nsg_rule("ssh", 110, "22", "10.0.0.0/8" if i % 5 else "*")]
            fake.add(p(sub, "Microsoft.Network/networkSecurityGroups"), az.nsg(sub, name, rules))
        elif kind < 12:
            fake.add(p(sub, "Microsoft.Compute/virtualMachines"), az.vm(sub, name))
        elif kind < 14:
            fake.add(p(sub, "Microsoft.Compute/disks"), az.disk(sub, name))
        elif kind < 16:
            kv = az.key_vault(sub, name, purge=i % 4 != 0)
            fake.add(p(sub, "Microsoft.KeyVault/vaults"), kv)
            fake.put_list(f"{kv['id']}/providers/Microsoft.Insights/diagnosticSettings",
                          [az.diag_setting("audit", workspace="/x", group="audit")])
        elif kind == 16:
            srv = az.sql_server(sub, name, public="Enabled" if i % 3 else "Disabled")
            fake.add(p(sub, "Microsoft.Sql/servers"), srv)
            fake.put(f"{srv['id']}/auditingSettings/default",
                     {"id": "a", "name": "Default", "properties": {"state": "Enabled"}})
            fake.put_list(f"{srv['id']}/firewallRules", [])
            db = {"id": f"{srv['id']}/databases/db", "name": "db", "location": "westeurope",
                  "type": "Microsoft.Sql/servers/databases", "properties": {"status": "Online"}}
            fake.put_list(f"{srv['id']}/databases", [db])
            fake.put(f"{db['id']}/transparentDataEncryption/current",
                     {"properties": {"state": "Enabled"}})
        else:
            vault = az.rs_vault(sub, name)
            fake.add(p(sub, "Microsoft.RecoveryServices/vaults"), vault)
            fake.put_list(f"{vault['id']}/backupPolicies",
                          [az.vm_policy(vault["id"], "daily", 30)])
    return fake


def gcp_estate(n: int, page_size: int) -> Any:
    from tests import gcp_fixtures as g

    fake = g.GcpFake(page_size=page_size, record=False)
    fake.add_org(g.ORG, "bench.example")
    fake.policies[g.ORG] = g.policy({"roles/viewer": ["group:all@bench.example"]},
                                    [g.FULL_AUDIT])
    folders = [f"folders/{300 + k}" for k in range(FOLDERS)]
    for k, folder in enumerate(folders):
        fake.add_folder(folder, g.ORG, f"team-{k}")
    projects = [f"bench-project-{k:03d}" for k in range(PROJECTS)]
    per: dict[str, dict[str, list[Any]]] = {
        pid: {"b": [], "fw": [], "sub": [], "sql": [], "key": [], "sa": []} for pid in projects
    }
    for k, pid in enumerate(projects):
        fake.add_project(pid, 10_000 + k, folders[k % FOLDERS])
        fake.policies[f"projects/{pid}"] = g.policy({
            "roles/editor": [f"serviceAccount:{k}-compute@developer.gserviceaccount.com"],
            "roles/viewer": ["user:dev@bench.example"]})
        fake.put_list(f"/v2/projects/{pid}/sinks", "sinks",
                      [*g.builtin_sinks(pid), g.sink(f"projects/{pid}", "all")])
        fake.put_list(f"/v1/projects/{pid}/locations/global/securityCenterServices",
                      "securityCenterServices", g.scc_services(pid))
        fake.put_list(f"/compute/v1/projects/{pid}/global/networks", "items",
                      [g.vpc(pid, "default" if k % 4 == 0 else "prod")])
        fake.put_list(f"/v1/projects/{pid}/locations", "locations", [
            {"name": f"projects/{pid}/locations/{loc}", "locationId": loc}
            for loc in ("global", "europe-west1")])
    for i in range(n):
        pid = projects[i % PROJECTS]
        kind = (i // PROJECTS) % 20
        name = f"{pid}-r{i}"
        bucket = per[pid]
        if kind < 6:
            b = g.bucket(name, pap="enforced" if i % 3 else "inherited")
            bucket["b"].append(b)
            fake.put(f"/storage/v1/b/{name}/iam", {"bindings": [
                {"role": "roles/storage.objectViewer", "members": ["group:x@bench.example"]}]})
        elif kind < 10:
            bucket["fw"].append(g.firewall(pid, f"fw{i}", "prod", ["0.0.0.0/0"] if i % 9 == 0
                                           else ["10.0.0.0/8"],
                                           [{"IPProtocol": "tcp", "ports": ["22", "443"]}]))
        elif kind < 13:
            bucket["sub"].append(g.subnet(pid, f"s{i}", "europe-west1", flow_logs=i % 2 == 0))
        elif kind < 15:
            bucket["sql"].append(g.sql_instance(pid, f"sql{i}", public=i % 5 == 0))
        elif kind < 17:
            ring = f"projects/{pid}/locations/europe-west1/keyRings/app"
            bucket["key"].append(g.crypto_key(ring, f"k{i}", rotation=None if i % 6 == 0
                                              else "7776000s"))
        else:
            sa = g.service_account(pid, f"sa{i}")
            bucket["sa"].append(sa)
            fake.put(f"/v1/{sa['name']}/keys", {"keys": [g.sa_key(sa["email"], f"k{i}", 30)]}
                     if i % 4 == 0 else {})
    for pid, items in per.items():
        fake.put_list(f"/storage/v1/b?project={pid}", "items", items["b"])
        fake.put_list(f"/compute/v1/projects/{pid}/global/firewalls", "items", items["fw"])
        fake.put(f"/compute/v1/projects/{pid}/aggregated/subnetworks",
                 {"items": {"regions/europe-west1": {"subnetworks": items["sub"]}}})
        fake.put_list(f"/v1/projects/{pid}/instances", "items", items["sql"])
        ring = f"projects/{pid}/locations/europe-west1/keyRings/app"
        if items["key"]:
            fake.put_list(f"/v1/projects/{pid}/locations/europe-west1/keyRings", "keyRings",
                          [{"name": ring}])
            fake.put_list(f"/v1/{ring}/cryptoKeys", "cryptoKeys", items["key"])
        fake.put_list(f"/v1/projects/{pid}/serviceAccounts", "accounts", items["sa"])
    return fake


# -- children -----------------------------------------------------------------------------


def _connector(cloud: str, url: str, workers: int) -> Any:
    from connectors.http import HttpOptions

    http = HttpOptions(timeout=30, max_attempts=3, retry_min_wait=0.1)
    if cloud == "azure":
        from connectors.azure import AzureConnector, AzureOptions
        from tests.azure_fixtures import StaticCredential

        opts = AzureOptions(arm_url=url, max_workers=workers, http=http)
        return AzureConnector("bench-azure", opts, credential=StaticCredential())
    from connectors.gcp import GcpConnector, GcpOptions
    from tests.gcp_fixtures import APIS, StaticTokenCredentials

    opts = GcpOptions(resource_manager_transport="rest", resource_manager_endpoint=url,
                      endpoints={api: f"{url}/{api}" for api in APIS},
                      resource_manager_retry_timeout=10, max_workers=workers, http=http)
    return GcpConnector("bench-gcp", opts, credentials=StaticTokenCredentials())


def child_collect(spec: dict[str, Any]) -> dict[str, Any]:
    from core.checks import evaluate
    from core.connector import CollectContext
    from core.records import Coverage, Evidence

    connector = _connector(spec["cloud"], spec["url"], spec["workers"])
    checks: dict[str, list[Any]] = {}
    for s in type(connector).checks():
        checks.setdefault(s.resource_type, []).append(s)
    params = {s.id: s.parameters for s in type(connector).checks()}
    if spec["mode"] == "idle":
        return {"rss_mb": peak_rss_mb()}
    counts = {"evidence": 0, "findings": 0, "units_ok": 0, "units_error": 0, "fail": 0}
    t0 = time.perf_counter()
    for rec in connector.collect(CollectContext(run_id="bench")):
        if isinstance(rec, Evidence):
            counts["evidence"] += 1
            for f in evaluate(rec, checks.get(rec.resource_type, ()), params):
                counts["findings"] += 1
                counts["fail"] += f.status == "fail"
        elif isinstance(rec, Coverage):
            counts["units_ok" if rec.ok else "units_error"] += 1
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "rss_mb": peak_rss_mb(), **counts}


def child_raw(spec: dict[str, Any]) -> dict[str, Any]:
    """The fake's capacity: the same number of requests as the connector made, as plain
    ``httpx`` GETs of one small list endpoint, on the same number of threads."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    url, n, workers = spec["url"], spec["requests"], spec["workers"]
    if spec["cloud"] == "azure":
        from tests.azure_fixtures import ARM_TOKEN as token

        sub = f"{0:08x}-0000-4000-8000-{0:012x}"
        path = f"/subscriptions/{sub}/providers/Microsoft.Security/pricings"
        params = {"api-version": "2024-01-01"}
    else:
        from tests.gcp_fixtures import GCP_TOKEN as token

        path = "/logging/v2/projects/bench-project-000/sinks"
        params = {}

    def worker(count: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
            for _ in range(count):
                c.get(path, params=params).raise_for_status()

    shares = [n // workers + (1 if k < n % workers else 0) for k in range(workers)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(worker, shares))
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "requests": n}


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True, text=True, env=env, timeout=1800,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({spec}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- parent -------------------------------------------------------------------------------


def bench_cloud(cloud: str, sizes: list[int], workers: int, page_size: int) -> dict[str, Any]:
    out: dict[str, Any] = {"scopes": SUBSCRIPTIONS if cloud == "azure" else PROJECTS,
                           "sizes": {}}
    build = azure_estate if cloud == "azure" else gcp_estate
    for n in sizes:
        fake = build(n, page_size)
        fake.start()
        try:
            before = fake.request_count
            idle = run_child({"cloud": cloud, "url": fake.url, "workers": workers,
                              "mode": "idle"})
            result = run_child({"cloud": cloud, "url": fake.url, "workers": workers,
                                "mode": "collect"})
            requests = fake.request_count - before
            raw = run_child({"cloud": cloud, "url": fake.url, "requests": requests,
                             "workers": workers, "mode": "raw"})
        finally:
            fake.stop()
        row = {
            "resources": n,
            "evidence": result["evidence"],
            "findings": result["findings"],
            "failing_findings": result["fail"],
            "units_ok": result["units_ok"],
            "units_error": result["units_error"],
            "wall_s": round(result["wall_s"], 2),
            "resources_per_s": round(n / result["wall_s"], 1),
            "evidence_per_s": round(result["evidence"] / result["wall_s"], 1),
            "requests": requests,
            "requests_per_resource": round(requests / n, 3),
            "requests_per_s": round(requests / result["wall_s"], 1),
            "peak_rss_mb": round(result["rss_mb"], 1),
            "idle_rss_mb": round(idle["rss_mb"], 1),
        }
        row["raw_requests_per_s"] = round(raw["requests"] / raw["wall_s"], 1)
        row["throughput_vs_raw"] = round(row["requests_per_s"] / row["raw_requests_per_s"], 2)
        out["sizes"][str(n)] = row
    rows = [out["sizes"][str(n)] for n in sizes]
    out["rss_ratio_largest_vs_smallest"] = round(rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"],
                                                 3)
    out["rss_flat"] = out["rss_ratio_largest_vs_smallest"] <= TARGET_RSS_RATIO
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", nargs="+", type=int, default=[2000, 20000])
    ap.add_argument("--clouds", default="azure,gcp")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--page-size", type=int, default=100)
    ap.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        fn = child_raw if spec["mode"] == "raw" else child_collect
        print(json.dumps(fn(spec)))
        return 0
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "page_size": args.page_size,
        "clouds": {},
    }
    for cloud in args.clouds.split(","):
        print(f"== {cloud}: {SUBSCRIPTIONS if cloud == 'azure' else PROJECTS} scopes", flush=True)
        res = bench_cloud(cloud, sorted(args.sizes), args.workers, args.page_size)
        results["clouds"][cloud] = res
        for n, row in res["sizes"].items():
            print(f"   N={n:>6}: {row['resources_per_s']:>8} resources/s  "
                  f"{row['requests_per_resource']:>6} req/resource  "
                  f"{row['requests_per_s']:>7} req/s "
                  f"(raw httpx {row['raw_requests_per_s']} req/s: {row['throughput_vs_raw']}x)  "
                  f"peak RSS {row['peak_rss_mb']} MB (idle {row['idle_rss_mb']} MB)  "
                  f"evidence {row['evidence']} findings {row['findings']} "
                  f"units ok/error {row['units_ok']}/{row['units_error']}", flush=True)
        verdict = "ok" if res["rss_flat"] else "NOT FLAT"
        print(f"   peak RSS ratio largest/smallest N: {res['rss_ratio_largest_vs_smallest']} "
              f"(target <= {TARGET_RSS_RATIO}: {verdict})", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"written to {args.out}")
    return 0 if all(c["rss_flat"] for c in results["clouds"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
