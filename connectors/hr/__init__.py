"""HR sources: the shared HR record model and checks, and the generic SCIM / CSV connector."""

from connectors.hr.connector import HrConnector, HrOptions

__all__ = ["HrConnector", "HrOptions"]
