"""RDS DB instances and clusters: encryption, backups, exposure, availability, deletion
protection.

Regional units (service ``rds``): ``DescribeDBInstances`` then ``DescribeDBClusters``
page by page, one evidence per instance and per cluster. Restorable times and the
cluster's transient ``Status`` (they move every few minutes) are dropped.

Resource types ``aws.rds.db_instance`` (id = ``DBInstanceArn``) and
``aws.rds.db_cluster`` (id = ``DBClusterArn``: Aurora, Multi-AZ DB clusters, and the
DocumentDB / Neptune clusters the RDS API also lists). Instances of a cluster
(``DBClusterIdentifier`` set) get Multi-AZ and deletion protection from their cluster,
so those two checks are ``not_applicable`` on them and judged on the cluster; a
cluster's encryption and backup retention are judged on the cluster too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from connectors.aws.common import actions, paginate, without
from connectors.aws.session import Account
from connectors.aws.units import ReaderSpec
from connectors.kit import require
from core.checks import Verdict, check, failed, not_applicable, passed
from core.records import Evidence

SERVICE = "rds"
DB_INSTANCE = "aws.rds.db_instance"

DB_CLUSTER = "aws.rds.db_cluster"

ACTIONS = actions("rds:DescribeDBInstances", "rds:DescribeDBClusters")

_VOLATILE = ("LatestRestorableTime",)
_CLUSTER_VOLATILE = ("LatestRestorableTime", "EarliestRestorableTime", "Status",
                     "PercentProgress")


def read(account: Account, region: str) -> Iterator[Evidence]:
    client = account.client("rds", region)
    for db in paginate(client, "describe_db_instances", "DBInstances",
                       PaginationConfig={"PageSize": 100}):
        arn = db.get("DBInstanceArn") or account.arn(
            "rds", region, f"db:{db['DBInstanceIdentifier']}"
        )
        yield account.evidence(DB_INSTANCE, arn, region, without(db, _VOLATILE))
    for cluster in paginate(client, "describe_db_clusters", "DBClusters",
                            PaginationConfig={"PageSize": 100}):
        arn = cluster.get("DBClusterArn") or account.arn(
            "rds", region, f"cluster:{cluster['DBClusterIdentifier']}")
        yield account.evidence(DB_CLUSTER, arn, region, without(cluster, _CLUSTER_VOLATILE))


READERS = (ReaderSpec(SERVICE, read, regional=True),)


def _name(payload: Mapping[str, Any]) -> str:
    return str(payload.get("DBInstanceIdentifier") or "?")


def _cluster(payload: Mapping[str, Any]) -> str:
    return str(payload.get("DBClusterIdentifier") or "?")


# Instances and clusters carry these settings under the same keys; the verdicts differ
# only in how they name the database (``subject``).


def _storage_encrypted(subject: str, payload: Mapping[str, Any]) -> Verdict:
    if require(payload, "StorageEncrypted"):
        return passed(f"{subject} encrypts storage with {payload.get('KmsKeyId', 'KMS')}")
    return failed(f"{subject} does not encrypt its storage")


def _deletion_protection(subject: str, payload: Mapping[str, Any]) -> Verdict:
    if require(payload, "DeletionProtection"):
        return passed(f"{subject} has deletion protection")
    return failed(f"{subject} can be deleted without first disabling a protection")


@check(
    id="aws.rds.storage_encrypted",
    title="RDS instances encrypt their storage",
    severity="high",
    resource_type=DB_INSTANCE,
    rationale="Storage encryption protects the database, its snapshots, backups and read "
    "replicas at rest.",
    remediation="Restore an encrypted copy from a snapshot copied with encryption, then "
    "switch to it (encryption cannot be turned on in place).",
)
def storage_encrypted(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return _storage_encrypted(_name(payload), payload)


@check(
    id="aws.rds.backup_retention",
    title="RDS instances keep automated backups long enough",
    severity="medium",
    resource_type=DB_INSTANCE,
    rationale="Automated backups with point-in-time recovery are the database's backup "
    "copies; a short retention loses them before a problem is noticed.",
    remediation="Set BackupRetentionPeriod to at least the required number of days.",
    parameters={"min_days": 7},
)
def backup_retention(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    source = payload.get("ReadReplicaSourceDBInstanceIdentifier") or payload.get(
        "ReadReplicaSourceDBClusterIdentifier")
    if source:
        return not_applicable(f"{_name(payload)} is a read replica of {source}: its "
                              "source's backups hold the data")
    days = require(payload, "BackupRetentionPeriod")
    want = params["min_days"]
    if days >= want:
        return passed(f"Automated backups are kept {days} days (required: {want})")
    if days == 0:
        return failed("Automated backups are disabled")
    return failed(f"Automated backups are kept only {days} days (required: {want})")


@check(
    id="aws.rds.not_publicly_accessible",
    title="RDS instances are not publicly accessible",
    severity="high",
    resource_type=DB_INSTANCE,
    rationale="A publicly accessible instance gets an internet-resolvable address; a "
    "database belongs in private subnets reached only from the application tier.",
    remediation="Modify the instance with PubliclyAccessible=false and keep it in private "
    "subnets.",
)
def not_publicly_accessible(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if require(payload, "PubliclyAccessible"):
        return failed(f"{_name(payload)} is publicly accessible")
    return passed(f"{_name(payload)} is not publicly accessible")


@check(
    id="aws.rds.multi_az",
    title="RDS instances run Multi-AZ",
    severity="medium",
    resource_type=DB_INSTANCE,
    rationale="A standby in a second availability zone keeps the database available when "
    "one zone fails.",
    remediation="Modify the instance with MultiAZ=true.",
)
def multi_az(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if payload.get("DBClusterIdentifier"):
        return not_applicable("Aurora instance: availability is configured on its cluster")
    if require(payload, "MultiAZ"):
        return passed(f"{_name(payload)} is Multi-AZ")
    return failed(f"{_name(payload)} runs in a single availability zone")


@check(
    id="aws.rds.deletion_protection",
    title="RDS instances have deletion protection",
    severity="medium",
    resource_type=DB_INSTANCE,
    rationale="Deleting an instance by mistake also removes its automated backups unless "
    "they are retained; deletion protection demands a deliberate change first.",
    remediation="Modify the instance with DeletionProtection=true.",
)
def deletion_protection(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if payload.get("DBClusterIdentifier"):
        return not_applicable("Aurora instance: deletion protection is set on its cluster")
    return _deletion_protection(_name(payload), payload)


# --- clusters ---------------------------------------------------------------------------


@check(
    id="aws.rds.cluster_storage_encrypted",
    title="RDS and Aurora clusters encrypt their storage",
    severity="high",
    resource_type=DB_CLUSTER,
    rationale="Cluster storage encryption protects the shared cluster volume, its "
    "snapshots and backups at rest, for every instance of the cluster.",
    remediation="Restore the cluster from a snapshot copied with encryption (encryption "
    "cannot be turned on in place), then switch the application to it.",
)
def cluster_storage_encrypted(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return _storage_encrypted(f"Cluster {_cluster(payload)}", payload)


@check(
    id="aws.rds.cluster_backup_retention",
    title="RDS and Aurora clusters keep automated backups long enough",
    severity="medium",
    resource_type=DB_CLUSTER,
    rationale="A cluster's continuous backups are its point-in-time recovery copies; a "
    "short retention loses them before a problem is noticed.",
    remediation="Set the cluster's BackupRetentionPeriod to at least the required days.",
    parameters={"min_days": 7},
)
def cluster_backup_retention(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    days = require(payload, "BackupRetentionPeriod")
    want = params["min_days"]
    if days >= want:
        return passed(f"Cluster {_cluster(payload)} keeps backups {days} days "
                      f"(required: {want})")
    return failed(f"Cluster {_cluster(payload)} keeps backups only {days} days "
                  f"(required: {want})")


@check(
    id="aws.rds.cluster_deletion_protection",
    title="RDS and Aurora clusters have deletion protection",
    severity="medium",
    resource_type=DB_CLUSTER,
    rationale="Deleting a cluster by mistake removes its volume and, unless retained, its "
    "automated backups; deletion protection demands a deliberate change first.",
    remediation="Modify the cluster with DeletionProtection=true.",
)
def cluster_deletion_protection(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return _deletion_protection(f"Cluster {_cluster(payload)}", payload)
