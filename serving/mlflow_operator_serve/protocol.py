"""MLflow's scoring protocol (`POST /invocations` and friends), byte for byte.

Parsing, schema-aware conversion and prediction serialisation are MLflow's own code from
`mlflow.pyfunc.scoring_server`: `_parse_json_data` (private, but it is the one function that
knows every JSON input shape, unified LLM input included), `parse_csv_input`,
`parse_parquet_input` and the parts of `predictions_to_json` (`_get_jsonable_obj`,
`NumpyEncoder`; the text written by the C encoder). Schema enforcement happens inside
`PyFuncModel.predict`. Three shortcuts give MLflow's results faster: JSON rows of a column
signature of one numeric type become the enforced frame directly (signature_frames.py),
`inputs`/`instances` of a tensor signature become MLflow's array directly
(signature_tensors.py), and bodies are decoded by orjson where it decodes as `json` does.
Every use of MLflow internals is in this module, so a change in MLflow shows up here and in
the protocol tests that compare us with `mlflow models serve`.

One deliberate difference: MLflow puts the Python stack trace of a failed prediction (and of a
CSV/Parquet parse error) into the response body (`stack_trace`). We log it and leave it out:
a stack trace tells a client about the server's code and data, and helps it not at all.
"""

from __future__ import annotations

import copy
import inspect
import io
import json
import logging
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import BAD_REQUEST
from mlflow.pyfunc import PyFuncModel
from mlflow.pyfunc import scoring_server as _scoring_server
from mlflow.utils import proto_json_utils as _json_utils
from mlflow.version import VERSION as MLFLOW_VERSION

from mlflow_operator_serve import jsonrows
from mlflow_operator_serve.signature_frames import SignatureFrames
from mlflow_operator_serve.signature_tensors import SignatureTensors

_logger = logging.getLogger(__name__)

# MLflow's scoring server module is untyped; one Any here instead of an ignore per call.
mlflow_scoring: Any = _scoring_server
_proto_json_utils: Any = _json_utils

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
    # The rows make the signature's frame without MLflow's casts and checks (signature_frames).
    conforming: bool = False
    # data is the array MLflow's parser would make, made by signature_tensors.
    tensor: bool = False

    @property
    def fast(self) -> bool:
        """Whether a fast path made the model input, not MLflow's parser."""
        return self.conforming or self.tensor


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
        from_example = getattr(metadata, "_is_type_hint_from_example", None)
        fast_paths = self.keep_json_rows and not (from_example is not None and from_example())
        self.signature_frames = (
            SignatureFrames.for_schema(self.input_schema) if fast_paths else None
        )
        self.signature_tensors = (
            SignatureTensors.for_schema(self.input_schema) if fast_paths else None
        )
        self._unenforced = _without_schema_enforcement(model) if self.signature_frames else None

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
        if not self.keep_json_rows:
            return self.parse_json(body)
        decoded = _decode_json(body)
        if (rows := jsonrows.scan(decoded)) is not None:
            frames = self.signature_frames
            conforming = frames is not None and frames.accepts(rows)
            return ParsedRequest(None, None, False, rows=rows, body=body, conforming=conforming)
        tensors = self.signature_tensors
        if tensors is not None and (array := tensors.array(decoded)) is not None:
            return ParsedRequest(array, None, False, tensor=True)
        return self.parse_json(body)

    def parse_json(self, body: bytes) -> ParsedRequest:
        """A JSON body parsed by MLflow's code; raises MLflow's errors for malformed input."""
        parsed = mlflow_scoring._parse_json_data(body, self.model.metadata, self.input_schema)
        return ParsedRequest(parsed.data, parsed.params, parsed.is_unified_llm_input)

    def frame_from_rows(self, requests: Sequence[ParsedRequest]) -> tuple[Any, bool]:
        """One DataFrame for the rows of requests with equal merge keys, and whether it
        conforms to the signature already (built by `signature_frames`, not MLflow's code)."""
        parts = [request.rows for request in requests if request.rows is not None]
        if requests[0].conforming and self.signature_frames is not None:
            return self.signature_frames.frame(parts), True
        field, value = jsonrows.merged_field(parts)
        return mlflow_scoring.infer_and_parse_data({field: value}, self.input_schema), False

    def predict_raw(
        self, data: Any, params: dict[str, Any] | None, *, conforming: bool = False
    ) -> Any:
        """`model.predict` called the way MLflow's server calls it; exceptions unchanged.

        A conforming frame skips the schema enforcement, which would return it unchanged.
        """
        model = self._unenforced if conforming and self._unenforced is not None else self.model
        if self.predict_takes_params:
            return model.predict(data, params=params)
        return model.predict(data)

    def predict(self, request: ParsedRequest) -> Any:
        """Predict one request alone, with MLflow's error messages (minus the stack trace)."""
        return self.predict_with_input(request)[1]

    def predict_with_input(self, request: ParsedRequest) -> tuple[Any, Any]:
        """The model input of one request and its predictions, as `predict` makes them."""
        if request.conforming:
            data, _ = self.frame_from_rows([request])
            try:
                return data, self.predict_raw(data, None, conforming=True)
            except Exception:  # noqa: BLE001 - MLflow's path below raises MLflow's own error
                # Predicting again the way MLflow does yields exactly its error message,
                # which quotes the frame MLflow built; only failing requests pay twice.
                _logger.debug("the model raised on a conforming frame; again by MLflow's path")
        if request.rows is not None:
            request = self.parse_json(request.body)
        try:
            return request.data, self.predict_raw(request.data, request.params)
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
        if unwrapped:
            out = io.StringIO()
            mlflow_scoring.unwrapped_predictions_to_json(predictions, out)
            return Reply(200, out.getvalue().encode())
        # `predictions_to_json` without its `json.dump`, whose encoder is the pure-Python one;
        # `json.dumps` writes the same text with the C encoder, in a fifth of the time.
        jsonable = _proto_json_utils._get_jsonable_obj(predictions, pandas_orient="records")
        body = json.dumps({"predictions": jsonable}, cls=_proto_json_utils.NumpyEncoder)
        return Reply(200, body.encode())


def _without_schema_enforcement(model: PyFuncModel) -> PyFuncModel:
    """The same loaded model, whose `predict` does not enforce the signature.

    Built from the public constructor and the developer-stable `_model_impl`, so `predict`
    keeps everything else MLflow does around the call (prediction context, params).
    """
    metadata: Any = copy.copy(model.metadata)
    metadata.signature = None
    predict_fn = metadata.flavors.get("python_function", {}).get("predict_fn", "predict")
    untyped: Any = model
    return PyFuncModel(
        model_meta=metadata,
        model_impl=untyped._model_impl,
        predict_fn=predict_fn,
        model_id=untyped.model_id,
    )


def _decode_json(body: bytes) -> object:
    """The body decoded as the standard library decodes it; None where that fails.

    orjson first: it decodes a row of 256 floats in 16 us where `json` takes 100 us, and a
    request body is decoded on the event loop. It yields the values `json` yields, except that
    it refuses NaN, Infinity and lone surrogates (decoded by `json` then) and makes an integer
    beyond 64 bits a float of magnitude 2**63 or more - which jsonrows never keeps, so the
    rows kept are exactly the rows `json` would give (tests/unit/serve/test_decode_json.py).
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None  # MLflow's parser produces the error response


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
