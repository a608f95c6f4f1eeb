"""A dynamic volume provisioner for the test cluster: the default StorageClass, backed by
directories on this machine, exposed as `local` PersistentVolumes.

Why our own: clusters get volumes from a provisioner (a CSI driver, or rancher's
local-path-provisioner on kind/k3s), and the test cluster has none, so a PersistentVolumeClaim
(a managed PostgreSQL's or MinIO's) would stay Pending. local-path-provisioner needs a helper
image and its own build; what it does for one machine is small: when the scheduler has picked a
node for a claim of our class (WaitForFirstConsumer), make a directory and a PersistentVolume
pinned to that node; when a released volume's class says Delete, remove both. `local` volumes
(unlike `hostPath`) get the pod's fsGroup applied by the kubelet, so non-root stores can write.

Claims on simulated (KWOK) nodes get a volume too: nothing mounts it there, but the pod binds
and schedules as it would on a real cluster.

A second class, `<class>-expandable`, allows volume expansion, and this program is its resizer
(the part a CSI driver's external-resizer plays): a bound claim that asks for more than it has
gets it, in the claim's status and its volume's capacity. A directory has no size to grow, so
that is the whole resize; the API server's checks (only an expandable class, never smaller)
and the controllers' part are the real ones.

Run by the real node (tests/cluster/realnode.py) as
``python -m tests.cluster.provisioner --kubeconfig K --storage-class C --root DIR``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests
import yaml
from lightkube.utils.quantity import parse_quantity

PROVISIONER = "mlflowops.dev/test-local-volumes"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
POLL_SECONDS = 0.5

logger = logging.getLogger("provisioner")


class Api:
    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self.server = cluster["server"]
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = cluster["certificate-authority"]
        self.session.cert = (user["client-certificate"], user["client-key"])

    def request(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
        response = self.session.request(
            method, self.server + path, json=body, headers=headers, timeout=10
        )
        if response.status_code == 404 and method == "DELETE":
            return None
        if response.status_code not in (200, 201, 409):
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()


def storage_class(name: str, *, expandable: bool = False) -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": name,
            "annotations": {
                "storageclass.kubernetes.io/is-default-class": "false" if expandable else "true"
            },
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        # the scheduler picks the node first, so the volume is made where the pod runs
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": expandable,
    }


def expandable(klass: str) -> str:
    return f"{klass}-expandable"


def persistent_volume(claim: dict[str, Any], node: str, path: Path, klass: str) -> dict[str, Any]:
    meta = claim["metadata"]
    spec = claim["spec"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pvc-{meta['uid']}",
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": spec.get("accessModes", ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": klass,
            "volumeMode": "Filesystem",
            "local": {"path": str(path)},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/hostname",
                                    "operator": "In",
                                    "values": [node],
                                }
                            ]
                        }
                    ]
                }
            },
        },
    }


def provision_pending(api: Api, classes: tuple[str, ...], root: Path) -> None:
    claims = api.request("GET", "/api/v1/persistentvolumeclaims")["items"]
    for claim in claims:
        meta, spec = claim["metadata"], claim["spec"]
        annotations = meta.get("annotations") or {}
        klass = spec.get("storageClassName")
        if (
            klass not in classes
            or spec.get("volumeName")
            or claim.get("status", {}).get("phase") != "Pending"
            or SELECTED_NODE not in annotations
        ):
            continue
        path = root / f"{meta['namespace']}-{meta['name']}-{meta['uid']}"
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)  # the kubelet applies the pod's fsGroup on mount
        api.request(
            "POST",
            "/api/v1/persistentvolumes",
            persistent_volume(claim, annotations[SELECTED_NODE], path, klass),
        )
        logger.info("provisioned %s/%s", meta["namespace"], meta["name"])


def resize_grown(api: Api, klass: str) -> None:
    """Give each bound claim of the expandable class the size it asks for."""
    for claim in api.request("GET", "/api/v1/persistentvolumeclaims")["items"]:
        meta, spec = claim["metadata"], claim["spec"]
        asked = spec["resources"]["requests"]["storage"]
        has = (claim.get("status") or {}).get("capacity", {}).get("storage")
        if spec.get("storageClassName") != klass or not spec.get("volumeName") or not has:
            continue
        if parse_quantity(asked) <= parse_quantity(has):
            continue
        # the claim's status first: the kubelet expands a mounted volume whose capacity is
        # above its claim's, and a directory has nothing for it to expand
        path = f"/api/v1/namespaces/{meta['namespace']}/persistentvolumeclaims/{meta['name']}"
        api.request("PATCH", f"{path}/status", {"status": {"capacity": {"storage": asked}}})
        api.request(
            "PATCH",
            f"/api/v1/persistentvolumes/{spec['volumeName']}",
            {"spec": {"capacity": {"storage": asked}}},
        )
        logger.info("resized %s/%s from %s to %s", meta["namespace"], meta["name"], has, asked)


def delete_released(api: Api, root: Path) -> None:
    volumes = api.request("GET", "/api/v1/persistentvolumes")["items"]
    for volume in volumes:
        meta, spec = volume["metadata"], volume["spec"]
        if (meta.get("annotations") or {}).get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
            continue
        if volume.get("status", {}).get("phase") != "Released":
            continue
        if spec.get("persistentVolumeReclaimPolicy") != "Delete":
            continue
        path = Path(spec["local"]["path"])
        if path.parent == root:
            shutil.rmtree(path, ignore_errors=True)
        api.request("DELETE", f"/api/v1/persistentvolumes/{meta['name']}")
        logger.info("deleted %s", meta["name"])


def run(kubeconfig: Path, klass: str, root: Path) -> None:
    api = Api(kubeconfig)
    root.mkdir(parents=True, exist_ok=True)
    api.request("POST", "/apis/storage.k8s.io/v1/storageclasses", storage_class(klass))
    api.request(
        "POST",
        "/apis/storage.k8s.io/v1/storageclasses",
        storage_class(expandable(klass), expandable=True),
    )
    while True:
        try:
            provision_pending(api, (klass, expandable(klass)), root)
            resize_grown(api, expandable(klass))
            delete_released(api, root)
        except (requests.RequestException, RuntimeError) as exc:
            logger.warning("%s", exc)  # the API server restarting, a race with a deletion
        time.sleep(POLL_SECONDS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.provisioner")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--storage-class", required=True)
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run(args.kubeconfig, args.storage_class, args.root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
