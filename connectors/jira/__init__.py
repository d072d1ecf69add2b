"""Jira Cloud and Data Center: process evidence from issues and their transition history."""

from connectors.jira.connector import JiraConnector, JiraOptions, JiraProcess

__all__ = ["JiraConnector", "JiraOptions", "JiraProcess"]
