"""ModelDeployment decisions, pure: what the registry selects, what the cluster shows, what to do.

The reconciler (reconcilers/modeldeployment.py) resolves the registry's target
(resolution.py), observes the serving Deployment and its pods (observation.py), asks
`plan_rollout()` what to do and what status and Events follow (rollout.py), with the
failed and last good versions kept on the Deployment (ledger.py); invariants.py states the
guarantees a rollout keeps. Nothing here reads or writes the cluster, and `now` is passed in.
"""
