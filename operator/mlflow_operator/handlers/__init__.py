"""kopf handlers: thin glue between Kubernetes events and the pure core.

Importing this package registers them with kopf.
"""

from mlflow_operator.handlers import mlflowserver, modeldeployment, startup

__all__ = ["mlflowserver", "modeldeployment", "startup"]
