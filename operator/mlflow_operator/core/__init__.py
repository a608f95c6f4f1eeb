"""Pure decisions: no kopf, no Kubernetes or MLflow clients, `now` passed in."""
