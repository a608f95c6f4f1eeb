"""Registry credentials Secrets, which the operator may not watch: read once per interval each
however many ModelDeployments use one, and those woken when it changes or goes."""

from __future__ import annotations

import asyncio

from mlflow_operator.reconcilers.secret_watch import SecretWatch

CREDS = {"username": "reader", "password": "s3cret"}


class Secrets:
    def __init__(self) -> None:
        self.data: dict[tuple[str, str], dict[str, str]] = {("ml", "creds"): dict(CREDS)}
        self.reads = 0

    async def read(self, name: str, namespace: str) -> dict[str, str] | None:
        self.reads += 1
        return self.data.get((namespace, name))


async def test_one_read_per_secret_and_every_user_woken_when_it_changes_or_goes() -> None:
    secrets = Secrets()
    watch = SecretWatch(secrets.read)
    woken: list[str] = []
    for name in ("a", "b", "c"):
        watch.use(f"ml/{name}", ("ml", "creds"), data=dict(CREDS), interval=60,
                  wake=lambda n=name: woken.append(n))  # fmt: skip
    try:
        await watch.check()
        assert (secrets.reads, woken) == (1, [])  # one Secret, one read; nothing changed

        secrets.data[("ml", "creds")]["password"] = "rotated"
        watch.use(
            "ml/a",
            ("ml", "creds"),
            data=secrets.data[("ml", "creds")],
            interval=60,
            wake=lambda: woken.append("a"),
        )  # fmt: skip  (a reads the change first)
        await watch.check()
        assert sorted(woken) == ["a", "b", "c"]  # b and c are told too

        woken.clear()
        del secrets.data[("ml", "creds")]
        await watch.check()
        assert sorted(woken) == ["a", "b", "c"]
    finally:
        await watch.close()


async def test_a_user_that_moves_to_another_secret_or_none_is_forgotten() -> None:
    secrets = Secrets()
    watch = SecretWatch(secrets.read)
    try:
        watch.use("ml/a", ("ml", "creds"), data=CREDS, interval=60, wake=lambda: None)
        watch.use("ml/a", ("ml", "other"), data=None, interval=60, wake=lambda: None)
        assert watch.watched() == [("ml", "other")]
        watch.forget("ml/a")
        assert watch.watched() == []
    finally:
        await watch.close()


async def test_the_secrets_are_read_every_interval_on_their_own() -> None:
    secrets = Secrets()
    watch = SecretWatch(secrets.read)
    woken: list[str] = []
    watch.use("ml/a", ("ml", "creds"), data=CREDS, interval=0.05, wake=lambda: woken.append("a"))
    try:
        del secrets.data[("ml", "creds")]
        for _ in range(40):
            await asyncio.sleep(0.05)
            if woken:
                break
        assert woken == ["a"]
    finally:
        await watch.close()
