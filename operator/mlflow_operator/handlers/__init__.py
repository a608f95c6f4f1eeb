"""kopf handlers: thin glue between Kubernetes events and the pure core.

Importing this package registers them with kopf.
"""

from mlflow_operator.handlers import mlflowserver, modeldeployment, startup
from mlflow_operator.handlers.lean_watch_events import lean_watch_events
from mlflow_operator.handlers.watcher_readiness import drop_readiness_when_a_watcher_stops

drop_readiness_when_a_watcher_stops()
lean_watch_events()

__all__ = ["mlflowserver", "modeldeployment", "startup"]
