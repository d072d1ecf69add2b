"""Azure connector: subscriptions of an Entra tenant read over Azure Resource Manager.

Registered as the ``azure`` entry point (``connectors.azure:AzureConnector``). Importing
the package registers every Azure check.
"""

from connectors.azure.connector import ACTIONS, AzureConnector, AzureOptions

__all__ = ["ACTIONS", "AzureConnector", "AzureOptions"]
