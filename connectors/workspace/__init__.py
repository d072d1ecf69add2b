"""Google Workspace connector (entry point
``workspace = "connectors.workspace:WorkspaceConnector"``)."""

from connectors.workspace.connector import WorkspaceConnector, WorkspaceOptions

__all__ = ["WorkspaceConnector", "WorkspaceOptions"]
