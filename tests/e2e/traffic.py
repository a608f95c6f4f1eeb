"""Scoring requests to a ModelDeployment's Service from a thread, as clients would send them,
with every answer kept: the canary e2e test and benchmark read what callers saw."""

from __future__ import annotations

import json
import threading
import time

import pandas as pd
import requests

from tests.mlflowstack.models import FAILING_CLASS, FAILS_ABOVE, iris

Answer = tuple[float, int, list[int] | None]  # (monotonic time, HTTP status or 0, predictions)


class Traffic:
    """Requests to the Service from a thread, 20/s, every `bad_every`-th one with a row that
    the failing version cannot score; each answer kept with its time, status and predictions."""

    def __init__(self, url: str, bad_every: int = 5) -> None:
        self.bad_every = bad_every
        features, _ = iris()
        self.good = features[features.iloc[:, 0] <= FAILS_ABOVE].iloc[::15].head(8)
        self.bad = pd.concat([self.good, features[features.iloc[:, 0] > FAILS_ABOVE].head(1)])
        self.url = url
        self.answers: list[Answer] = []
        self.bodies: list[tuple[float, bytes]] = []  # what callers got, byte for byte
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        session = requests.Session()
        session.trust_env = False
        n = 0
        while not self._stop.is_set():
            rows = self.bad if n % self.bad_every == self.bad_every - 1 else self.good
            n += 1
            body = {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
            try:
                # a connection per request: kube-proxy spreads connections, not requests
                response = session.post(
                    f"{self.url}/invocations", json=body, timeout=10,
                    headers={"Connection": "close"},
                )  # fmt: skip
                predictions = (
                    [int(p) for p in response.json()["predictions"]]
                    if response.status_code == 200
                    else None
                )
                now = time.monotonic()
                self.answers.append((now, response.status_code, predictions))
                self.bodies.append((now, response.content))
            except requests.RequestException:
                self.answers.append((time.monotonic(), 0, None))
            self._stop.wait(0.05)

    def since(self, start: float) -> list[Answer]:
        return [a for a in list(self.answers) if a[0] >= start]

    def bodies_since(self, start: float) -> list[bytes]:
        return [body for at, body in list(self.bodies) if at >= start]

    def request_bodies(self) -> tuple[dict[str, object], dict[str, object]]:
        """The two requests it sends: the good rows, and the good rows plus one bad."""
        return tuple(  # type: ignore[return-value]
            {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
            for rows in (self.good, self.bad)
        )


def from_failing_version(answer: Answer) -> bool:
    """An answer of `log_failing_version`'s model: a failure, or its class for every row."""
    _, code, predictions = answer
    return code != 200 or (predictions is not None and set(predictions) == {FAILING_CLASS})
