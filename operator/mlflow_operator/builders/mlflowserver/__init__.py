"""The MLflowServer's children: the tracking server (server.py), managed PostgreSQL and MinIO,
their generated Secrets (secrets.py), backups and restores (backup.py); common.py holds what
they share (labels, probes of the stores)."""
