"""MLflow's scoring protocol (`POST /invocations` and friends), byte for byte.

Parsing, schema-aware conversion and prediction serialisation are MLflow's own code from
`mlflow.pyfunc.scoring_server`: `_parse_json_data` (private, but it is the one function that
knows every JSON input shape, unified LLM input included), `parse_csv_input`,
`parse_parquet_input` and `predictions_to_json`. Schema enforcement happens inside
`PyFuncModel.predict`. Every use of MLflow internals is in this module, so a change in MLflow
shows up here and in the protocol tests that compare us with `mlflow models serve`.

One deliberate difference: MLflow puts the Python stack trace of a failed prediction (and of a
CSV/Parquet parse error) into the response body (`stack_trace`). We log it and leave it out:
a stack trace tells a client about the server's code and data, and helps it not at all.
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import traceback
from dataclasses import dataclass
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import BAD_REQUEST
from mlflow.pyfunc import PyFuncModel
from mlflow.pyfunc import scoring_server as _scoring_server
from mlflow.version import VERSION as MLFLOW_VERSION

from mlflow_operator_serve import jsonrows

_logger = logging.getLogger(__name__)

# MLflow's scoring server module is untyped; one Any here instead of an ignore per call.
mlflow_scoring: Any = _scoring_server

JSON = "application/json"
# Starlette (under MLflow's FastAPI app) adds the charset to text/* media types.
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Reply:
    """One HTTP response: what MLflow's server would send for the same request."""

    status: int
    body: bytes
    content_type: str = JSON


PING = Reply(200, b"\n")
VERSION = Reply(200, MLFLOW_VERSION.encode())
NOT_FOUND = Reply(404, b'{"detail":"Not Found"}')
METHOD_NOT_ALLOWED = Reply(405, b'{"detail":"Method Not Allowed"}')
INTERNAL_ERROR = Reply(500, b"Internal Server Error", TEXT)
TIMED_OUT = Reply(504, b"Request processing time exceeded limit")


@dataclass
class ParsedRequest:
    """A request body turned into model input, ready for `predict`."""

    data: Any
    params: dict[str, Any] | None
    # Unified LLM input is answered without the {"predictions": ...} wrapper.
    unwrapped: bool
    # Plain JSON tabular input kept as rows (data is None until predicted), see jsonrows.py.
    rows: jsonrows.JsonRows | None = None
    body: bytes = b""


class ScoringProtocol:
    """MLflow's request parsing and response rendering for one loaded model."""

    def __init__(self, model: PyFuncModel) -> None:
        self.model = model
        metadata: Any = model.metadata
        self.input_schema = metadata.get_input_schema()
        # MLflow checks this per request; the answer never changes for a loaded model.
        self.predict_takes_params = "params" in inspect.signature(model.predict).parameters
        # MLflow skips DataFrame parsing for signatures from type hints; rows must not be kept.
        from_type_hint = getattr(metadata, "_is_signature_from_type_hint", None)
        self.keep_json_rows = not (from_type_hint is not None and from_type_hint())

    def parse(self, body: bytes, content_type: str | None) -> ParsedRequest | Reply:
        """The model input of a request, or the reply that refuses it.

        Raises MlflowException for malformed input (rendered by `error_reply`), as MLflow does.
        """
        if content_type is None:
            # MLflow's handler fails on None.split() and Starlette answers a bare 500;
            # we keep the behaviour, not the crash.
            return INTERNAL_ERROR
        mime_type = _mime_type(content_type)
        if isinstance(mime_type, Reply):
            return mime_type
        if mime_type == mlflow_scoring.CONTENT_TYPE_CSV:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as ex:
                raise mlflow_scoring.MlflowInvalidInputException(
                    f"Ensure that input is a valid UTF-8 encoded string. Error: '{ex!r}'"
                ) from ex
            data = mlflow_scoring.parse_csv_input(
                csv_input=io.StringIO(text), schema=self.input_schema
            )
            return ParsedRequest(data, None, unwrapped=False)
        if mime_type == mlflow_scoring.CONTENT_TYPE_JSON:
            return self._json_request(body)
        if mime_type == mlflow_scoring.CONTENT_TYPE_PARQUET:
            data = mlflow_scoring.parse_parquet_input(parquet_input=io.BytesIO(body))
            return ParsedRequest(data, None, unwrapped=False)
        message = (
            "This predictor only supports the following content types:"
            f" Types: {mlflow_scoring.CONTENT_TYPES}."
            f" Got '{content_type}'."
        )
        return Reply(415, message.encode(), TEXT)

    def _json_request(self, body: bytes) -> ParsedRequest:
        if self.keep_json_rows and (rows := _json_rows(body)) is not None:
            return ParsedRequest(None, None, unwrapped=False, rows=rows, body=body)
        return self.parse_json(body)

    def parse_json(self, body: bytes) -> ParsedRequest:
        """A JSON body parsed by MLflow's code; raises MLflow's errors for malformed input."""
        parsed = mlflow_scoring._parse_json_data(body, self.model.metadata, self.input_schema)
        return ParsedRequest(parsed.data, parsed.params, parsed.is_unified_llm_input)

    def frame_from_rows(self, parts: list[jsonrows.JsonRows]) -> Any:
        """One DataFrame for the rows of several requests, built and cast by MLflow's code."""
        field, value = jsonrows.merged_field(parts)
        return mlflow_scoring.infer_and_parse_data({field: value}, self.input_schema)

    def predict_raw(self, data: Any, params: dict[str, Any] | None) -> Any:
        """`model.predict` called the way MLflow's server calls it; exceptions unchanged."""
        if self.predict_takes_params:
            return self.model.predict(data, params=params)
        return self.model.predict(data)

    def predict(self, request: ParsedRequest) -> Any:
        """Predict one request alone, with MLflow's error messages (minus the stack trace)."""
        if request.rows is not None:
            request = self.parse_json(request.body)
        try:
            return self.predict_raw(request.data, request.params)
        except MlflowException as e:
            e.message = f"Failed to predict data '{request.data}'. \nError: {e.message}"
            raise
        except Exception as e:
            _logger.exception("the model raised while predicting")
            raise MlflowException(
                message=(
                    "Encountered an unexpected error while evaluating the model. Verify"
                    " that the serialized input Dataframe is compatible with the model for"
                    " inference."
                ),
                error_code=BAD_REQUEST,
            ) from e

    @staticmethod
    def predictions_reply(predictions: Any, unwrapped: bool) -> Reply:
        out = io.StringIO()
        if unwrapped:
            mlflow_scoring.unwrapped_predictions_to_json(predictions, out)
        else:
            mlflow_scoring.predictions_to_json(predictions, out)
        return Reply(200, out.getvalue().encode())


def _json_rows(body: bytes) -> jsonrows.JsonRows | None:
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None  # MLflow's parser produces the error response
    return jsonrows.scan(decoded)


def _mime_type(content_type: str) -> str | Reply:
    """The media type of a Content-Type header, or MLflow's 415 for parameters it refuses."""
    mime_type, *parameter_pairs = (part.strip() for part in content_type.split(";"))
    parameters = {key: value for pair in parameter_pairs for key, _, value in [pair.partition("=")]}
    if parameters.get("charset", "utf-8").lower() != "utf-8":
        return Reply(415, b"The scoring server only supports UTF-8", TEXT)
    if unexpected := set(parameters).difference({"charset"}):
        message = (
            f"Unrecognized content type parameters: {', '.join(unexpected)}. "
            f"{mlflow_scoring.SCORING_PROTOCOL_CHANGE_INFO}"
        )
        return Reply(415, message.encode(), TEXT)
    return mime_type


def error_reply(error: MlflowException) -> Reply:
    """MLflow's JSON error shape and HTTP status, without the stack trace."""
    untyped: Any = error
    if stack_trace := untyped.json_kwargs.get("stack_trace"):
        _logger.warning("request failed: %s\n%s", untyped.message, stack_trace)
    serialized: dict[str, Any] = json.loads(untyped.serialize_as_json())
    serialized.pop("stack_trace", None)
    return Reply(int(untyped.get_http_status_code()), json.dumps(serialized).encode())


def log_unexpected(error: BaseException) -> None:
    """An error MLflow's server would answer with a bare 500: log it in full."""
    _logger.error(
        "unexpected error while handling a request:\n%s",
        "".join(traceback.format_exception(error)),
    )
