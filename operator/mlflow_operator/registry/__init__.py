"""The only MLflow I/O: the REST client, the shared registry watcher, the webhook receiver."""
