"""Policy documents: Markdown policies with YAML front matter in a git repository."""

from connectors.policies.connector import PoliciesConnector, PoliciesOptions

__all__ = ["PoliciesConnector", "PoliciesOptions"]
