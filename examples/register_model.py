"""Train a small model, register it in MLflow and point an alias at the new version.

    python examples/register_model.py [MODEL] [ALIAS]     # default: iris champion

MLflow's client reads MLFLOW_TRACKING_URI, MLFLOW_TRACKING_USERNAME and _PASSWORD from the
environment, as the README's quick start sets them.
"""

import sys

import mlflow
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

name = sys.argv[1] if len(sys.argv) > 1 else "iris"
alias = sys.argv[2] if len(sys.argv) > 2 else "champion"
features, labels = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=500).fit(features, labels)
with mlflow.start_run():
    logged = mlflow.sklearn.log_model(
        model, name="model", input_example=features[:2], registered_model_name=name
    )
version = logged.registered_model_version
mlflow.MlflowClient().set_registered_model_alias(name, alias, version)
print(f"registered {name} version {version}, alias {alias}")
