"""The only Kubernetes I/O: server-side apply of children, reads, deletes."""
