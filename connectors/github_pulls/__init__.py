"""GitHub pull requests: merged PRs, their reviews and status checks as change evidence."""

from connectors.github_pulls.connector import (
    GitHubPullsConnector,
    GitHubPullsOptions,
    PullsProcess,
)

__all__ = ["GitHubPullsConnector", "GitHubPullsOptions", "PullsProcess"]
