"""Pure builders: desired state -> manifest dicts, applied by kube/ with server-side apply."""
