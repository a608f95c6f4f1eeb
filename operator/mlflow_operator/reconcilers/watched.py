"""What a ModelDeployment's reconcile reads, as the operator's watch streams last told it.

Its serving Deployment, Service and PodDisruptionBudget, its MLflowServer and its pods are read
from here instead of a GET (a LIST for pods) each: an idle operator then asks the API server
nothing at all, and a rollout lists no pods (docs/benchmarks.md, the scale goal of <= 1 request
per second for 10,000 ModelDeployments).
The indices behind it are kopf's (handlers/modeldeployment.py): kopf calls no event handler
(which feeds the reconcile queue) before every index holds the initial listing, so an empty
entry means the object does not exist, not "not read yet".

What the watch has not delivered yet (a child applied a moment ago) is seen one event later;
every decision taken from it is written with the ModelDeployment's resourceVersion, and every
apply of a child is idempotent, so a stale read costs a repeated no-op, never a wrong act.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# (namespace, name) -> the objects of that name: kopf's Index, a mapping of keys to stores
KindIndex = Mapping[tuple[str, str], Iterable[dict[str, Any]]]


# strings up to this long are shared between the objects kept (keys, label values, images);
# longer ones (a model's command line, a certificate) are rarely repeated
SHARED_STRING_CHARS = 64


class _SharedDict(dict[str, Any]):
    """A dict a weak reference can point at (a plain one cannot): what `SharedSubtrees` keeps."""

    __slots__ = ("__weakref__",)


class _SharedList(list[Any]):
    __slots__ = ("__weakref__",)


# One letter per JSON type in a subtree's key: 1, 1.0 and True are equal in Python and must
# not be shared for one another; containers stand in keys by identity (an int), not by value.
_TYPE_CODES: dict[type, str] = {
    str: "s", int: "i", float: "f", bool: "b", type(None): "n",
    dict: "d", _SharedDict: "d", list: "l", _SharedList: "l",
}  # fmt: skip


class SharedSubtrees:
    """The objects and arrays kept by the indices, each distinct one once.

    Thousands of kept Deployments repeat the same probes, security contexts, ports, strategy
    and, per model, the same environment and command: half of each is equal to a part of
    another (bench_scale). `compact` builds every part bottom-up, so its children are already
    the shared ones and a part's key is shallow: its keys, its scalars and its children's
    identities (a Deployment's copy takes 232 us instead of 165).

    A part is entered in the table at its second sighting (only a hash of its key is noted at
    the first): most parts of an object are its own (its name, uid, labels, status) and an
    entry for each would cost as much as sharing saves. Entries are weak: a part no object
    keeps any more leaves the table, and a child that is part of an entry's key lives as long
    as the entry, so an identity in a key is never one of another object.
    """

    def __init__(self, first_sightings: int = 1 << 17) -> None:
        self._table: weakref.WeakValueDictionary[tuple[Any, ...], Any] = (
            weakref.WeakValueDictionary()
        )
        self._first_sightings: set[int] = set()
        self._first_sightings_limit = first_sightings  # bounds the notes' memory: 8.4 MiB full

    def __len__(self) -> int:
        return len(self._table)

    def compact(self, value: Any) -> Any:
        """`compact`, sharing this table's parts."""
        if isinstance(value, Mapping):  # a dict, or a view of one (kopf's Body)
            return self.compact_object(value)
        if isinstance(value, list):
            return self.shared_list([self.compact(item) for item in value])
        if isinstance(value, str) and len(value) <= SHARED_STRING_CHARS:
            return sys.intern(value)
        return value

    def compact_object(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        return self.shared_dict({sys.intern(key): self.compact(item) for key, item in obj.items()})

    def shared_dict(self, obj: dict[str, Any]) -> dict[str, Any]:
        shape = _shape(obj.values())
        if shape is None:
            return obj
        key = (shape, *[part for name, item in obj.items() for part in (name, _token(item))])
        shared: dict[str, Any] = self._share(obj, key, _SharedDict)
        return shared

    def shared_list(self, items: list[Any]) -> list[Any]:
        shape = _shape(items)
        if shape is None:
            return items
        key = ("[" + shape, *[_token(item) for item in items])
        shared: list[Any] = self._share(items, key, _SharedList)
        return shared

    def _share(self, value: Any, key: tuple[Any, ...], kind: type) -> Any:
        found = self._table.get(key)
        if found is not None:
            return found
        digest = hash(key)
        if digest not in self._first_sightings:
            if len(self._first_sightings) >= self._first_sightings_limit:
                self._first_sightings.clear()
            self._first_sightings.add(digest)
            return value
        entered = kind(value)
        self._table[key] = entered
        return entered


def _shape(values: Iterable[Any]) -> str | None:
    shape = "".join([_TYPE_CODES.get(type(value), "?") for value in values])
    return None if "?" in shape else shape


def _token(value: Any) -> Any:
    return id(value) if isinstance(value, (dict, list)) else value


SUBTREES = SharedSubtrees()


def watched_copy(body: Mapping[str, Any], subtrees: SharedSubtrees = SUBTREES) -> dict[str, Any]:
    """What an index keeps of an object: all of it but managedFields (the largest part of a
    Deployment, read by nobody here), `compact`."""
    kept = {key: value for key, value in body.items() if key != "metadata"}
    metadata = body.get("metadata") or {}
    kept["metadata"] = {key: value for key, value in metadata.items() if key != "managedFields"}
    return subtrees.compact_object(kept)


def compact_object(obj: Mapping[str, Any]) -> dict[str, Any]:
    """`compact` of a JSON object."""
    return SUBTREES.compact_object(obj)


def compact(value: Any) -> Any:
    """A copy of a JSON value whose keys and short strings are the same objects in every copy
    (interned), and whose objects and arrays equal to ones kept before are those very ones
    (`SharedSubtrees`). Objects kept here are never changed in place: a change would show in
    every object that shares the part.

    Each decoded watch event has its own copy of every key ("name", "containerPort", ...),
    label value, probe and security context. A serving Deployment kept in memory takes
    5.4 KB instead of 10.4 KB with its parts shared, 10.4 KB instead of ~20 KB with strings
    shared (tracemalloc over 10,000 copies of one kept by bench_scale, 10 per model)."""
    return SUBTREES.compact(value)


def watched_pod(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the pod index keeps of a serving pod: what the reconcile reads of it (labels and
    annotations, its node, its containers' memory limits and the mirror ConfigMap it mounts,
    its status) and no more. A pod is kept per replica, 10,000 ModelDeployments keep tens of
    thousands, and a whole pod (its spec's env, probes, volumes) is most of its size."""
    metadata = body.get("metadata") or {}
    spec = body.get("spec") or {}
    containers = [
        {"name": c.get("name"), "resources": {"limits": _memory_limit(c)}}
        for c in spec.get("containers") or []
    ]
    config_maps = [
        {"name": v.get("name"), "configMap": {"name": v["configMap"].get("name")}}
        for v in spec.get("volumes") or []
        if v.get("configMap")
    ]
    kept_spec = {"nodeName": spec.get("nodeName"), "containers": containers, "volumes": config_maps}
    return compact_object(
        {
            "metadata": {key: value for key, value in metadata.items() if key in _POD_METADATA},
            "spec": {key: value for key, value in kept_spec.items() if value},
            "status": body.get("status") or {},
        }
    )


_POD_METADATA = frozenset(
    {"name", "namespace", "uid", "resourceVersion", "labels", "annotations",
     "creationTimestamp", "deletionTimestamp"}
)  # fmt: skip


def _memory_limit(container: Mapping[str, Any]) -> dict[str, Any]:
    limits = (container.get("resources") or {}).get("limits") or {}
    return {"memory": limits["memory"]} if "memory" in limits else {}


@dataclass(frozen=True)
class Watched:
    """The indices of the kinds read from the watch; other kinds are read with a GET (a LIST
    for pods)."""

    indices: Mapping[str, KindIndex] = field(default_factory=dict)  # kind -> index

    def knows(self, kind: str) -> bool:
        return kind in self.indices

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """The object named so, or None when the watch knows of none."""
        return next(iter(self.indices[kind].get((namespace, name), ())), None)

    def pods(
        self, namespace: str, model_deployment: str, labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        """The pods of one ModelDeployment (the pod index is keyed by its label) that carry
        every one of `labels`, as a label selector of equalities selects them."""
        return [
            pod
            for pod in self.indices["Pod"].get((namespace, model_deployment), ())
            if all((pod["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())
        ]


@dataclass
class WrittenAhead:
    """What this operator wrote a moment ago that the watch has not told yet, per
    ModelDeployment: read in place of the version the watch still shows. Without it a reconcile
    woken by its own status write decided from the status before it, and a rollout applied the
    same Deployment up to 4 times (bench_scale). What was written is kept as the watch would
    keep it (`watched_copy`): until the next reconcile reads it, which may be a poll interval
    later (7 MiB at 1,000 idle ModelDeployments, kept whole).

    Writes onto the version the one before produced form a row, and a watch still showing any
    version the row replaced is behind its last write. With only the last replaced version
    remembered, a watch two writes behind (3,000 ModelDeployments applied at once: minutes
    behind) made every reconcile decide from the old status and write onto the old version:
    9,897 of 17,618 status writes were refused with 409 Conflict (bench_scale, 2026-12-05)."""

    # owner -> what (kind, name) -> (the resourceVersions this operator's writes replaced, in a
    # row, None for a creation; the object the last one wrote, None if deleted)
    _writes: dict[str, dict[Hashable, tuple[tuple[str | None, ...], dict[str, Any] | None]]] = (
        field(default_factory=dict)
    )

    def wrote(
        self,
        owner: str,
        what: Hashable,
        replaced_version: str | None,
        stored: dict[str, Any] | None,
    ) -> None:
        kept = None if stored is None else watched_copy(stored)
        writes = self._writes.setdefault(owner, {})
        earlier_row, earlier_object = writes.get(what, ((), None))
        row: tuple[str | None, ...] = (replaced_version,)
        if replaced_version is not None and replaced_version == resource_version(earlier_object):
            row = (*earlier_row, replaced_version)  # onto what the earlier write produced
        writes[what] = (row, kept)

    def read(
        self, owner: str, what: Hashable, seen: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The object written, while `seen` (the watch's) is still a version the writes
        replaced; else `seen`, and the writes are forgotten (told, or changed by someone since)."""
        writes = self._writes.get(owner, {})
        written = writes.get(what)
        if written is not None and resource_version(seen) in written[0]:
            return written[1]
        writes.pop(what, None)
        return seen

    def forget(self, owner: str) -> None:
        self._writes.pop(owner, None)


def resource_version(obj: Mapping[str, Any] | None) -> str | None:
    return None if obj is None else (obj.get("metadata") or {}).get("resourceVersion")
