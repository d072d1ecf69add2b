"""Okta connector (entry point ``okta = "connectors.okta:OktaConnector"``)."""

from connectors.okta.connector import OktaConnector, OktaOptions

__all__ = ["OktaConnector", "OktaOptions"]
