"""Jamf Pro connector (entry point ``jamf = "connectors.jamf:JamfConnector"``)."""

from connectors.jamf.connector import JamfConnector, JamfOptions

__all__ = ["JamfConnector", "JamfOptions"]
