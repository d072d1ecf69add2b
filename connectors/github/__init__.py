"""GitHub connector (entry point ``github = "connectors.github:GitHubConnector"``)."""

from connectors.github.connector import GitHubConnector, GitHubOptions

__all__ = ["GitHubConnector", "GitHubOptions"]
