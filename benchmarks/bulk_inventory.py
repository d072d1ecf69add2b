"""Benchmark: calls per resource, direct reads vs a provider inventory (Google Cloud
Asset Inventory, Azure Resource Graph).

    python benchmarks/bulk_inventory.py [--cloud gcp azure] [--projects 10 50 100]
                                        [--per-project 20] [--page-size 500] [--workers 8]
                                        [--subscriptions 10 50] [--per-subscription 20]
                                        [--arm-page-size 100]

Google Cloud:
An organisation of N projects (under 5 folders), each with ``--per-project`` resources
of the inventoried types (buckets with an IAM policy, firewall rules, subnets; one VPC),
served by the test fake (tests/gcp_fixtures.py: a real HTTP server on 127.0.0.1). The
connector collects it twice in this process — ``inventory = "direct"`` (the baseline)
and ``inventory = "asset_inventory"`` — and the fake's request log gives:

* calls in total, and the calls of the ``storage`` and ``network`` units (what the
  inventory replaces: bucket listings and policies, compute listings) vs Cloud Asset
  calls, per inventoried resource;
* whether both modes produced the same evidence (content hashes);
* wall time of each collect and the ratio bulk/direct (same run, same machine).

Azure: N subscriptions, each with ``--per-subscription`` storage accounts, NSGs and
VNets (a third each), served by tests/azure_fixtures.py (ARM listings of
``--arm-page-size`` items a page, and Resource Graph). Collected with ``inventory =
"direct"`` and ``"resource_graph"``; figures: calls of the ``storage`` and ``network``
units (the three listings, or the Resource Graph queries, plus each account's lifecycle
policy, which both modes read from ARM) per inventoried resource, and the ratio.

Calls are exact counts; times are indicative only (a loaded machine, a Python fake).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FOLDERS = 5
REPLACED = ("/storage/v1/b", "/global/firewalls", "/global/networks",
            "/aggregated/subnetworks")


def estate(projects: int, per_project: int, page_size: int) -> Any:
    from tests import gcp_fixtures as g

    fake = g.GcpFake(page_size=page_size, asset_page_size=1000)
    fake.add_org(g.ORG, "bench.example")
    folders = [f"folders/{300 + k}" for k in range(FOLDERS)]
    for k, folder in enumerate(folders):
        fake.add_folder(folder, g.ORG, f"team-{k}")
    for p in range(projects):
        pid = f"bench-project-{p:04d}"
        fake.add_project(pid, 10_000 + p, folders[p % FOLDERS])
        buckets, rules, subnets = [], [], []
        for i in range(per_project):
            name = f"{pid}-r{i}"
            if i % 3 == 0:
                buckets.append(g.bucket(name, pap="enforced" if i % 2 else "inherited"))
                fake.put(f"/storage/v1/b/{name}/iam", {"bindings": [
                    {"role": "roles/storage.objectViewer",
                     "members": ["allUsers" if i % 7 == 0 else "group:x@bench.example"]}]})
            elif i % 3 == 1:
                rules.append(g.firewall(pid, f"fw{i}", "prod",
                                        ["0.0.0.0/0"] if i % 4 == 0 else ["10.0.0.0/8"],
                                        [{"IPProtocol": "tcp", "ports": ["22", "443"]}]))
            else:
                subnets.append(g.subnet(pid, f"s{i}", "europe-west1", flow_logs=i % 2 == 0))
        fake.put_list(f"/storage/v1/b?project={pid}", "items", buckets)
        fake.put_list(f"/compute/v1/projects/{pid}/global/firewalls", "items", rules)
        fake.put_list(f"/compute/v1/projects/{pid}/global/networks", "items",
                      [g.vpc(pid, "prod")])
        fake.put(f"/compute/v1/projects/{pid}/aggregated/subnetworks",
                 {"items": {"regions/europe-west1": {"subnetworks": subnets}}})
    return fake


def timed_hashes(conn: Any, fake: Any,
                 services: tuple[str, ...] = ()) -> tuple[dict[str, str], float]:
    """One collection by ``conn`` from ``fake`` (its request log emptied first): the content
    hash of each evidence by key (of ``services`` only, when named), and the seconds."""
    from core.connector import CollectContext
    from core.records import Evidence

    fake.requests.clear()
    t0 = time.perf_counter()
    hashes = {r.key: r.content_hash() for r in conn.collect(CollectContext(run_id="bench"))
              if isinstance(r, Evidence) and (not services or r.service in services)}
    return hashes, time.perf_counter() - t0


def both_ways(fake: Any, collect: Any, bulk_mode: str,
              workers: int) -> list[tuple[dict[str, str], float, list[str]]]:
    """The estate collected directly, then through ``bulk_mode``, from one running fake:
    each way's evidence hashes, seconds and request paths."""
    out = []
    with fake:
        for mode in ("direct", bulk_mode):
            hashes, seconds = collect(fake, mode, workers)
            out.append((hashes, seconds, [s.path for s in fake.requests]))
    return out


def collect(fake: Any, mode: str, workers: int) -> tuple[dict[str, str], float]:
    from connectors.gcp import GcpConnector, GcpOptions
    from tests.gcp_fixtures import StaticTokenCredentials

    opts = GcpOptions.model_validate({
        "resource_manager_transport": "rest", "resource_manager_endpoint": fake.url,
        "resource_manager_retry_timeout": 10, "endpoints": fake.endpoints(),
        "max_workers": workers, "inventory": mode,
        "http": {"timeout": 30, "max_attempts": 3, "retry_min_wait": 0.1}})
    c = GcpConnector(f"bench-{mode}", opts, credentials=StaticTokenCredentials())
    return timed_hashes(c, fake)


AZURE_LISTINGS = ("/providers/microsoft.storage/storageaccounts",
                  "/providers/microsoft.network/networksecuritygroups",
                  "/providers/microsoft.network/virtualnetworks")
GRAPH = "/providers/Microsoft.ResourceGraph/resources"


def azure_estate(subscriptions: int, per_sub: int, page_size: int) -> Any:
    from tests import azure_fixtures as a

    fake = a.ArmFake(page_size=page_size, record=True)
    for n in range(subscriptions):
        sub = f"{n:08x}-0000-4000-8000-000000000000"
        fake.add_subscription(sub, f"bench-{n}")
        for i in range(per_sub):
            kind = i % 3
            if kind == 0:
                fake.add(f"/subscriptions/{sub}/providers/Microsoft.Storage/storageAccounts",
                         a.storage_account(sub, f"st{n}x{i}", public=i % 2 == 0))
            elif kind == 1:
                fake.add(f"/subscriptions/{sub}/providers/Microsoft.Network/"
                         "networkSecurityGroups",
                         a.nsg(sub, f"nsg{i}", [a.nsg_rule("ssh", 100, "22",
                                                           "*" if i % 4 == 1 else "10.0.0.0/8")]))
            else:
                fake.add(f"/subscriptions/{sub}/providers/Microsoft.Network/virtualNetworks",
                         a.vnet(sub, f"vnet{i}", {"app": i % 2 == 0, "db": True}))
    return fake


def azure_collect(fake: Any, mode: str, workers: int) -> tuple[dict[str, str], float]:
    from connectors.azure import AzureConnector, AzureOptions
    from tests.azure_fixtures import StaticCredential

    opts = AzureOptions.model_validate({
        "arm_url": fake.url, "max_workers": workers, "inventory": mode,
        "http": {"timeout": 30, "max_attempts": 3, "retry_min_wait": 0.1}})
    c = AzureConnector(f"bench-{mode}", opts, credential=StaticCredential())
    return timed_hashes(c, fake, ("storage", "network"))


def azure_unit_calls(paths: list[str]) -> tuple[int, int, int]:
    """(listing calls, Resource Graph calls, lifecycle-policy calls) of the storage and
    network units."""
    listings = sum(1 for p in paths if p.lower().endswith(AZURE_LISTINGS))
    graph = sum(1 for p in paths if p == GRAPH)
    policies = sum(1 for p in paths if p.endswith("/managementPolicies/default"))
    return listings, graph, policies


def bench_azure(args: argparse.Namespace) -> None:
    print(f"\nAzure Resource Graph (ARM page {args.arm_page_size}, graph page 1000)")
    print("units: calls of the storage and network units (listings or graph + lifecycle "
          "policies); lists: the listings alone vs the graph queries")
    print(f"{'subs':>5} {'resources':>9} | {'direct calls':>12} {'units':>6} {'per res':>7} | "
          f"{'bulk calls':>10} {'graph':>5} {'units':>6} {'per res':>7} | "
          f"{'units':>5} {'lists':>9} {'ratio':>5} | {'same':>4} {'t direct':>8} "
          f"{'t bulk':>7} {'ratio':>5}")
    for n in args.subscriptions:
        fake = azure_estate(n, args.per_subscription, args.arm_page_size)
        (direct, t_direct, d_paths), (bulk, t_bulk, b_paths) = both_ways(
            fake, azure_collect, "resource_graph", args.workers)
        resources = n * args.per_subscription
        d_list, _, d_pol = azure_unit_calls(d_paths)
        d_units = d_list + d_pol
        b_list, b_graph, b_pol = azure_unit_calls(b_paths)
        b_units = b_list + b_graph + b_pol
        lists = f"{d_list}/{b_list + b_graph}"
        print(f"{n:>5} {resources:>9} | {len(d_paths):>12} {d_units:>6} "
              f"{d_units / resources:>7.3f} | {len(b_paths):>10} {b_graph:>5} {b_units:>6} "
              f"{b_units / resources:>7.3f} | {b_units / d_units:>5.2f} {lists:>9} "
              f"{(b_list + b_graph) / d_list:>5.3f} | {direct == bulk!s:>4} "
              f"{t_direct:>7.2f}s {t_bulk:>6.2f}s {t_bulk / t_direct:>5.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cloud", nargs="+", choices=["gcp", "azure"], default=["gcp", "azure"])
    ap.add_argument("--projects", type=int, nargs="+", default=[10, 50, 100])
    ap.add_argument("--per-project", type=int, default=20)
    ap.add_argument("--page-size", type=int, default=500,
                    help="page size of the direct listings (Compute allows 500)")
    ap.add_argument("--subscriptions", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--per-subscription", type=int, default=21)
    ap.add_argument("--arm-page-size", type=int, default=100,
                    help="page size of the fake's ARM listings")
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    if "gcp" in args.cloud:
        bench_gcp(args)
    if "azure" in args.cloud:
        bench_azure(args)


def bench_gcp(args: argparse.Namespace) -> None:
    print("Google Cloud Asset Inventory")
    print(f"{'projects':>8} {'resources':>9} | {'direct calls':>12} {'replaced':>8} "
          f"{'per res':>7} | {'bulk calls':>10} {'asset':>5} {'per res':>7} | "
          f"{'same':>4} {'t direct':>8} {'t bulk':>7} {'ratio':>5}")
    for n in args.projects:
        fake = estate(n, args.per_project, args.page_size)
        (direct, t_direct, d_calls), (bulk, t_bulk, b_calls) = both_ways(
            fake, collect, "asset_inventory", args.workers)
        resources = n * (args.per_project + 1)  # + each project's VPC
        d_rep = sum(1 for p in d_calls if any(x in p for x in REPLACED))
        b_rep = sum(1 for p in b_calls if any(x in p for x in REPLACED))
        asset = sum(1 for p in b_calls if p.startswith("/cloudasset/"))
        print(f"{n:>8} {resources:>9} | {len(d_calls):>12} {d_rep:>8} "
              f"{d_rep / resources:>7.3f} | {len(b_calls):>10} {asset:>5} "
              f"{(b_rep + asset) / resources:>7.3f} | {direct == bulk!s:>4} "
              f"{t_direct:>7.2f}s {t_bulk:>6.2f}s {t_bulk / t_direct:>5.2f}")


if __name__ == "__main__":
    main()
