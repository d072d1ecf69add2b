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


@check("aws.rds.storage_encrypted")
def storage_encrypted(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return _storage_encrypted(_name(payload), payload)


@check("aws.rds.backup_retention")
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


@check("aws.rds.not_publicly_accessible")
def not_publicly_accessible(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if require(payload, "PubliclyAccessible"):
        return failed(f"{_name(payload)} is publicly accessible")
    return passed(f"{_name(payload)} is not publicly accessible")


@check("aws.rds.multi_az")
def multi_az(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if payload.get("DBClusterIdentifier"):
        return not_applicable("Aurora instance: availability is configured on its cluster")
    if require(payload, "MultiAZ"):
        return passed(f"{_name(payload)} is Multi-AZ")
    return failed(f"{_name(payload)} runs in a single availability zone")


@check("aws.rds.deletion_protection")
def deletion_protection(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    if payload.get("DBClusterIdentifier"):
        return not_applicable("Aurora instance: deletion protection is set on its cluster")
    return _deletion_protection(_name(payload), payload)


# --- clusters ---------------------------------------------------------------------------


@check("aws.rds.cluster_storage_encrypted")
def cluster_storage_encrypted(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return _storage_encrypted(f"Cluster {_cluster(payload)}", payload)


@check("aws.rds.cluster_backup_retention")
def cluster_backup_retention(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    days = require(payload, "BackupRetentionPeriod")
    want = params["min_days"]
    if days >= want:
        return passed(f"Cluster {_cluster(payload)} keeps backups {days} days "
                      f"(required: {want})")
    return failed(f"Cluster {_cluster(payload)} keeps backups only {days} days "
                  f"(required: {want})")


@check("aws.rds.cluster_deletion_protection")
def cluster_deletion_protection(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    return _deletion_protection(f"Cluster {_cluster(payload)}", payload)
