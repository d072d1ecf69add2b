"""ServiceNow: process evidence from Table API records, their audit trail and approvals."""

from connectors.servicenow.connector import (
    ServiceNowConnector,
    ServiceNowOptions,
    ServiceNowProcess,
)

__all__ = ["ServiceNowConnector", "ServiceNowOptions", "ServiceNowProcess"]
