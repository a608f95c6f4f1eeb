"""One reconcile of each kind: gather -> decide (core) -> build (builders) -> act (kube).

The kopf handlers call these; they hold no kopf code so that a reader finds the whole sequence
of one reconcile in one place.
"""
