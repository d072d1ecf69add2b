"""BambooHR: employee directory and a custom report of onboarding and leaving dates."""

from connectors.bamboohr.connector import BambooHRConnector, BambooHROptions

__all__ = ["BambooHRConnector", "BambooHROptions"]
