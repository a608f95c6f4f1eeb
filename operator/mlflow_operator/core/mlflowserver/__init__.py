"""MLflowServer decisions, pure: what was observed, what to do, and the status it makes.

The reconciler (reconcilers/mlflowserver.py) gathers a `ServerObservation`
(observation.py), asks `plan_server()` what to do (plan.py), acts, and writes `fold_status()`
(status.py) back. Nothing here reads or writes the cluster, and `now` is passed in.
"""
