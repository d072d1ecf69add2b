"""Microsoft Entra ID connector (entry point ``entra = "connectors.entra:EntraConnector"``)."""

from connectors.entra.connector import EntraConnector, EntraOptions

__all__ = ["EntraConnector", "EntraOptions"]
