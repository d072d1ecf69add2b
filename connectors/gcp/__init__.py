"""Google Cloud connector: projects, folders and the organisation of a Google Cloud
estate, read through Resource Manager and the services' REST APIs.

Registered as the ``gcp`` entry point (``connectors.gcp:GcpConnector``). Importing the
package registers every Google Cloud check.
"""

from connectors.gcp.connector import PERMISSIONS, GcpConnector, GcpOptions

__all__ = ["PERMISSIONS", "GcpConnector", "GcpOptions"]
