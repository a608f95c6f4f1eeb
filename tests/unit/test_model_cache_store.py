"""The model cache's disk store: attribution, eviction by keep count and by bytes, a restart."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mlflow_operator.core.model_cache import ListedEntry, upstream_key
from mlflow_operator.model_cache.store import (
    CachedVersion,
    Store,
    safe_name,
)

UPSTREAM = "http://mlflow.example.com:5000"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def root_of(model: str, version: str) -> str:
    return f"/1/models/m-{model}-{version}/artifacts"


def put(store: Store, entry: CachedVersion, rel: str, data: bytes) -> None:
    temp, out = store.open_temp(entry, rel)
    with out:
        out.write(data)
    assert store.commit(entry, rel, temp, len(data), hashlib.sha256(data).hexdigest())


def add_version(
    store: Store, model: str, version: str, size: int = 100, keep: int = 3
) -> CachedVersion:
    entry = store.learn(UPSTREAM, model, version, root_of(model, version), keep)
    put(store, entry, "MLmodel", b"m" * 10)
    put(store, entry, "data/model.pkl", b"x" * (size - 10))
    return entry


def versions(store: Store) -> set[tuple[str, str]]:
    return {(v.model, v.version) for v in store.versions()}


def test_files_land_under_the_upstream_key_model_and_version_with_a_meta(tmp_path: Path) -> None:
    store = Store(tmp_path, clock=Clock())
    entry = add_version(store, "iris", "1")
    base = tmp_path / upstream_key(UPSTREAM) / "iris" / "1"
    assert (base / "files" / "data" / "model.pkl").read_bytes() == b"x" * 90
    meta = json.loads((base / "meta.json").read_text())
    assert meta["artifact_root"] == "/1/models/m-iris-1/artifacts"
    assert meta["files"]["MLmodel"] == {"size": 10, "sha256": hashlib.sha256(b"m" * 10).hexdigest()}
    assert meta["complete"] is False  # no listing said what the version has
    assert store.total_bytes == entry.bytes == 100
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]


def test_downloads_are_attributed_to_the_version_whose_root_they_are_under(tmp_path: Path) -> None:
    store = Store(tmp_path, clock=Clock())
    entry = add_version(store, "iris", "1")
    found = store.attribute(UPSTREAM, "1/models/m-iris-1/artifacts/data/model.pkl")
    assert found == (entry, "data/model.pkl")
    assert store.attribute(UPSTREAM, "1/models/m-iris-1/artifacts", directory=True) == (entry, "")
    assert store.attribute(UPSTREAM, "1/models/m-iris-2/artifacts/MLmodel") is None
    assert store.attribute("http://other:5000", "1/models/m-iris-1/artifacts/MLmodel") is None
    cached = store.cached(entry, "data/model.pkl")
    assert cached is not None
    assert cached.size == 90


def test_listings_that_name_only_files_the_store_has_make_a_version_complete(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path, clock=Clock())
    entry = add_version(store, "iris", "1")
    store.note_listing(
        entry, "", [ListedEntry("MLmodel", False, 10), ListedEntry("data", True, None)]
    )
    assert not entry.complete  # data/ not listed yet
    store.note_listing(entry, "data", [ListedEntry("model.pkl", False, 90)])
    assert entry.complete
    store.note_listing(entry, "data", [ListedEntry("model.pkl", False, 91)])
    assert not entry.complete  # a size the store does not have


def test_keep_versions_keeps_the_most_recently_used_versions_of_each_model(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path, clock=Clock())
    for version in ("1", "2", "3"):
        add_version(store, "iris", version, keep=3)
    add_version(store, "wine", "1", keep=3)
    assert store.evictions == 0
    # version 1 is used again: it is the most recent now, 2 the least
    one = store.lookup(UPSTREAM, "iris", "1")
    assert one is not None
    store.touch(one)
    add_version(store, "iris", "4", keep=3)
    assert versions(store) == {("iris", "1"), ("iris", "3"), ("iris", "4"), ("wine", "1")}
    assert not (tmp_path / upstream_key(UPSTREAM) / "iris" / "2").exists()
    # a smaller keep count asked later applies to the model at once
    add_version(store, "iris", "5", keep=1)
    assert versions(store) == {("iris", "5"), ("wine", "1")}
    assert store.evictions == 4
    assert store.total_bytes == 200


def test_a_version_being_downloaded_is_never_evicted_and_goes_once_it_is_done(
    tmp_path: Path,
) -> None:
    evicted: list[str] = []
    store = Store(tmp_path, clock=Clock(), on_evict=lambda v: evicted.append(v.version))
    old = add_version(store, "iris", "1", keep=1)
    with store.pin(old):
        add_version(store, "iris", "2", keep=1)
        assert versions(store) == {("iris", "1"), ("iris", "2")}
        put(store, old, "late.bin", b"z")  # its download goes on
    assert versions(store) == {("iris", "2")}
    assert evicted == ["1"]


def test_max_bytes_evicts_the_least_recently_used_versions_of_any_model(tmp_path: Path) -> None:
    store = Store(tmp_path, max_bytes=250, clock=Clock())
    add_version(store, "iris", "1", size=100)
    add_version(store, "wine", "1", size=100)
    assert store.total_bytes == 200
    add_version(store, "iris", "2", size=100)
    assert versions(store) == {("wine", "1"), ("iris", "2")}
    assert store.total_bytes == 200


def test_max_bytes_never_evicts_the_newest_version_nor_a_pinned_one(tmp_path: Path) -> None:
    store = Store(tmp_path, max_bytes=150, clock=Clock())
    first = add_version(store, "iris", "1", size=100)
    with store.pin(first):
        add_version(store, "wine", "1", size=100)
        assert store.total_bytes == 200  # over, but the one evictable is the newest
    assert versions(store) == {("wine", "1")}
    big = add_version(store, "big", "1", size=1000)
    assert versions(store) == {("big", "1")}  # alone, larger than max_bytes
    assert store.cached(big, "data/model.pkl") is not None


def test_a_restarted_store_has_the_same_versions_and_drops_what_a_crash_left(
    tmp_path: Path,
) -> None:
    clock = Clock()
    store = Store(tmp_path, clock=clock)
    done = add_version(store, "iris", "1")
    store.note_listing(
        done, "", [ListedEntry("MLmodel", False, 10), ListedEntry("data", True, None)]
    )
    store.note_listing(done, "data", [ListedEntry("model.pkl", False, 90)])
    partial = store.learn(UPSTREAM, "iris", "2", root_of("iris", "2"), 3)
    put(store, partial, "MLmodel", b"m" * 10)
    # what a crash leaves: a temporary file, a file no meta names, a truncated file
    (partial.directory / "files" / ".tmp-abc").write_bytes(b"half")
    (partial.directory / "files" / "orphan.bin").write_bytes(b"orphan")
    (done.directory / "files" / "MLmodel").write_bytes(b"m")
    (tmp_path / "junk" / "model" / "1").mkdir(parents=True)
    (tmp_path / "junk" / "model" / "1" / "meta.json").write_text("{not json")

    again = Store(tmp_path, clock=clock)
    assert versions(again) == {("iris", "1"), ("iris", "2")}
    restored = again.lookup(UPSTREAM, "iris", "1")
    assert restored is not None
    assert set(restored.files) == {"data/model.pkl"}  # the truncated MLmodel is gone
    assert not restored.complete
    unfinished = again.lookup(UPSTREAM, "iris", "2")
    assert unfinished is not None
    assert set(unfinished.files) == {"MLmodel"}  # a partial version keeps its finished files
    assert again.total_bytes == 90 + 10
    assert not (partial.directory / "files" / ".tmp-abc").exists()
    assert not (partial.directory / "files" / "orphan.bin").exists()
    assert not (tmp_path / "junk" / "model" / "1").exists()
    assert again.attribute(UPSTREAM, "1/models/m-iris-2/artifacts/MLmodel") == (
        unfinished,
        "MLmodel",
    )


def test_names_unfit_for_files_get_a_safe_name_that_no_other_name_shares() -> None:
    assert safe_name("iris") == "iris"
    assert safe_name("3") == "3"
    for unsafe in ("a/b", "..", ".hidden", "ünïcode", "a b", ""):
        name = safe_name(unsafe)
        assert "/" not in name
        assert not name.startswith(".")
        assert name
    assert safe_name("a/b") != safe_name("a_b")
    assert safe_name("a b") != safe_name("a_b")
