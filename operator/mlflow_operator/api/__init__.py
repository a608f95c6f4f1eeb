"""The public API: pydantic models of the custom resources, and the CRDs generated from them."""

API_GROUP = "mlflowops.dev"
API_VERSION = "v1alpha1"
CATEGORY = "mlflow"
