"""The model cache: a node-local, read-through caching reverse proxy of MLflow tracking servers.

One runs on each node (a DaemonSet). A serving pod that uses it has an MLFLOW_TRACKING_URI that
names its node's cache, with the real tracking server encoded in the path
(core/model_cache.py: cached_tracking_uri). The MLflow client in the pod talks to the cache as
if it were the server: the cache forwards every MLflow API request, and keeps on the node's disk
the artifact files of the model versions loaded through it (store.py). Artifacts of a model
version never change, so a second pod of the version on the node, or a rollback to a version
still cached there, downloads nothing from the object store; a new version can be prefetched
onto the nodes before any pod of it is created (POST /prefetch).

Why a proxy and not a shared volume or an init container: every runtime loads through
MLFLOW_TRACKING_URI (`mlflow models serve`, the batched runtime, custom images), so the cache is
transparent to all of them, with no change to what they run. And the serving pods mount no
hostPath: they stay PodSecurity `restricted`; only the cache's own pods touch the node's disk.
server.py says how a cached file stays no more readable than through the server itself.
"""
