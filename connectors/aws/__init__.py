"""AWS connector: the security configuration of an account or a whole AWS Organization.

Registered as the ``aws`` entry point (``connectors.aws:AwsConnector``). Importing the
package registers every AWS check.
"""

from connectors.aws.connector import ACTIONS, AwsConnector, AwsOptions

__all__ = ["ACTIONS", "AwsConnector", "AwsOptions"]
