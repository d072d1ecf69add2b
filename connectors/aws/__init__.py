"""AWS connector: IAM, S3, S3 Control, CloudTrail and EC2 evidence of an account.

Registered as the ``aws`` entry point (``connectors.aws:AwsConnector``). Importing the
package registers every AWS check.
"""

from connectors.aws.connector import ACTIONS, AwsConnector, AwsOptions

__all__ = ["ACTIONS", "AwsConnector", "AwsOptions"]
