"""mlflow-operator: registry-driven deployment of MLflow models on Kubernetes."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mlflow-operator")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
