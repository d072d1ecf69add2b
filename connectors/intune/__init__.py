"""Microsoft Intune connector (entry point ``intune = "connectors.intune:IntuneConnector"``)."""

from connectors.intune.connector import IntuneConnector, IntuneOptions

__all__ = ["IntuneConnector", "IntuneOptions"]
