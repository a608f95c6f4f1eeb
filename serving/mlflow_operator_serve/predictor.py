"""The pyfunc model as the batcher sees it: parsed requests in, raw predictions out."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from mlflow_operator_serve import tabular
from mlflow_operator_serve.protocol import ParsedRequest, ScoringProtocol


class PyfuncBatchModel:
    """Implements `batcher.BatchModel[ParsedRequest, Any]` for one MLflow pyfunc model."""

    def __init__(
        self, protocol: ScoringProtocol, observe: Callable[[Any, Any], None] | None = None
    ) -> None:
        self._protocol = protocol
        # Told every model input and its predictions (drift.DriftMonitor.observe); must not
        # block: it runs on the batcher's thread, before the callers get their answers.
        self._observe = observe

    def merge_key(self, item: ParsedRequest) -> Hashable | None:
        if item.rows is not None:
            return ("json", item.conforming, *item.rows.merge_key)
        return tabular.merge_key(item.data, item.params, item.unwrapped)

    def size(self, item: ParsedRequest) -> int:
        if item.rows is not None:
            return len(item.rows.rows)
        return tabular.row_count(item.data)

    def predict_one(self, item: ParsedRequest) -> Any:
        # Exactly what MLflow's server does for this request, errors included.
        data, predictions = self._protocol.predict_with_input(item)
        if self._observe is not None:
            self._observe(data, predictions)
        return predictions

    def predict_merged(self, items: Sequence[ParsedRequest]) -> Sequence[Any]:
        # Schema enforcement runs once, on the merged frame; a failure (one bad request
        # among good ones) raises, and the batcher then predicts each request alone so that
        # only the bad one gets the error.
        sizes = [self.size(item) for item in items]
        if items[0].rows is not None:
            # Equal merge keys: every item has rows of the same columns and kinds.
            merged, conforming = self._protocol.frame_from_rows(items)
        else:
            merged, conforming = tabular.merge([item.data for item in items]), False
        predictions = self._protocol.predict_raw(merged, None, conforming=conforming)
        if self._observe is not None:
            self._observe(merged, predictions)
        return tabular.split(predictions, sizes)
