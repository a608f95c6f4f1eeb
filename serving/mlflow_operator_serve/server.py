"""The HTTP server: MLflow's endpoints on aiohttp, readiness, and a draining shutdown.

aiohttp rather than MLflow's FastAPI/uvicorn: with the same trivial handler, aiohttp answered
1,653 req/s at concurrency 16 and uvicorn+Starlette 732 req/s on the 2-core test machine
(uvicorn without uvloop/httptools, as MLflow installs it); see docs/serving.md.

Lifecycle of a process: load and warm up the model, then listen. A socket that accepts is a
model that answers: `/ping` is 200 from the first connection on. SIGTERM stops accepting,
lets in-flight requests finish (up to `drain_seconds`), then exits.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from mlflow_operator_serve.settings import ServeSettings

if TYPE_CHECKING:  # at run time these import MLflow and pandas: only after options are parsed
    from mlflow_operator_serve.batcher import AdaptiveBatcher
    from mlflow_operator_serve.drift import DriftMonitor
    from mlflow_operator_serve.metrics import ServingMetrics
    from mlflow_operator_serve.mirror import Mirror
    from mlflow_operator_serve.prediction_log import PredictionLog
    from mlflow_operator_serve.protocol import ParsedRequest, Reply, ScoringProtocol
    from mlflow_operator_serve.version_run import VersionRun

_logger = logging.getLogger(__name__)

# Bodies up to this size are parsed on the event loop (a thread hop costs more than parsing a
# few rows); larger ones in a thread so that other connections are not stalled meanwhile.
INLINE_PARSE_BYTES = 64 * 1024
# MLflow's container puts nginx with client_max_body_size 100m in front of its server.
MAX_BODY_BYTES = 100 * 1024 * 1024


@dataclass
class ServingState:
    """Everything the request handlers use, created once per worker process."""

    protocol: ScoringProtocol
    batcher: AdaptiveBatcher[ParsedRequest, Any]
    metrics: ServingMetrics
    timeout_seconds: float
    # Strategy Shadow: copies of a share of requests to a candidate; None: no --mirror-config.
    mirror: Mirror | None = None
    # Sampled requests and answers written to MLflow; None: --sample-rate 0.
    prediction_log: PredictionLog | None = None
    # Per-feature drift scores; None: no --drift.
    drift: DriftMonitor | None = None


def _response(r: Reply) -> web.Response:
    return web.Response(status=r.status, body=r.body, headers={"Content-Type": r.content_type})


async def _score(state: ServingState, body: bytes, content_type: str | None) -> Reply:
    """The reply to one `/invocations` body: parsed, batched, predicted, rendered."""
    from mlflow.exceptions import MlflowException

    from mlflow_operator_serve import protocol as proto

    try:
        if len(body) <= INLINE_PARSE_BYTES:
            parsed = state.protocol.parse(body, content_type)
        else:
            parsed = await asyncio.to_thread(state.protocol.parse, body, content_type)
        if isinstance(parsed, proto.Reply):
            return parsed
        state.metrics.input_parsed(parsed.fast)
        predictions = await state.batcher.submit(parsed)
    except MlflowException as error:
        return proto.error_reply(error)
    return state.protocol.predictions_reply(predictions, parsed.unwrapped)


def build_app(state: ServingState) -> web.Application:
    from mlflow_operator_serve import protocol as proto

    reply = _response
    ping_response = proto.PING
    version_response = proto.VERSION

    async def ping(_: web.Request) -> web.Response:
        return reply(ping_response)

    async def version(_: web.Request) -> web.Response:
        return reply(version_response)

    async def metrics(_: web.Request) -> web.Response:
        from mlflow_operator_serve.metrics import CONTENT_TYPE

        return web.Response(body=state.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def invocations(request: web.Request) -> web.Response:
        started = time.perf_counter()
        state.metrics.request_started()
        body: bytes | None = None
        try:
            body = await request.read()
            async with asyncio.timeout(state.timeout_seconds):
                result = await _score(state, body, request.headers.get("Content-Type"))
        except TimeoutError:
            result = proto.TIMED_OUT
        except Exception as error:  # noqa: BLE001 - MLflow answers these with a bare 500
            proto.log_unexpected(error)
            result = proto.INTERNAL_ERROR
        state.metrics.request_done(result.status, time.perf_counter() - started)
        if state.mirror is not None and body is not None:
            # Returns at once: the copy is a task of its own, and never fails this request.
            state.mirror.offer(
                body, request.headers.get("Content-Type"), result.status, result.body
            )
        if state.prediction_log is not None and body is not None:
            state.prediction_log.offer(
                body, request.headers.get("Content-Type"), result.status, result.body,
                request.headers.get("X-Request-ID"),
            )  # fmt: skip
        return reply(result)

    @web.middleware
    async def fastapi_errors(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # FastAPI's JSON bodies for unknown paths and wrong methods, so clients see one API.
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return reply(proto.NOT_FOUND)
        except web.HTTPMethodNotAllowed:
            return reply(proto.METHOD_NOT_ALLOWED)

    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[fastapi_errors])
    app.router.add_get("/ping", ping, allow_head=False)
    app.router.add_get("/health", ping, allow_head=False)
    app.router.add_get("/version", version, allow_head=False)
    app.router.add_get("/metrics", metrics, allow_head=False)
    app.router.add_post("/invocations", invocations)
    # always routed: without sampling it says why there is nothing to label, not a bare 404
    app.router.add_post("/labels", _labels_handler(state))
    return app


def _labels_handler(state: ServingState) -> Callable[[web.Request], Awaitable[web.Response]]:
    from mlflow_operator_serve.labels import is_json

    async def labels(request: web.Request) -> web.Response:
        log = state.prediction_log
        if log is None:
            return _response(_labels_off())
        content_type = request.headers.get("Content-Type")
        if not is_json(content_type):
            return _response(_labels_not_json(content_type))
        body = await request.read()
        # as /invocations parses: a large body in a thread, not stalling other connections
        if len(body) <= INLINE_PARSE_BYTES:
            return _response(_labels_reply(log, body))
        return _response(await asyncio.to_thread(_labels_reply, log, body))

    return labels


def _labels_reply(log: PredictionLog, body: bytes) -> Reply:
    """The answer to a `POST /labels` JSON body: 202 once queued for the writer, never
    waiting for MLflow; refused as a whole otherwise."""
    from mlflow_operator_serve.labels import LabelError, error_body, parse_labels
    from mlflow_operator_serve.protocol import Reply

    try:
        parsed = parse_labels(body)
    except LabelError as error:
        return Reply(400, error_body("BAD_REQUEST", str(error)))
    queued = log.labels(parsed)
    if queued == "full":
        message = "too many samples and labels waiting to be written to MLflow; retry later"
        return Reply(503, error_body("TEMPORARILY_UNAVAILABLE", message))
    if queued == "too large":
        message = "labels: more than this server holds for its writer at once; post them in parts"
        return Reply(400, error_body("BAD_REQUEST", message))
    return Reply(202, json.dumps({"accepted": len(parsed)}).encode())


def _labels_off() -> Reply:
    from mlflow_operator_serve.labels import error_body
    from mlflow_operator_serve.protocol import Reply

    message = (
        "POST /labels needs serving.monitoring.sampleRate > 0 (--sample-rate): labels are "
        "matched with sampled requests, and this server samples none"
    )
    return Reply(404, error_body("ENDPOINT_NOT_FOUND", message))


def _labels_not_json(content_type: str | None) -> Reply:
    """415 with a plain-text reason, as `/invocations` refuses a content type."""
    from mlflow_operator_serve.protocol import TEXT, Reply

    message = f"POST /labels only takes Content-Type application/json. Got '{content_type}'."
    return Reply(415, message.encode(), TEXT)


def prepare_state(settings: ServeSettings, model_dir: Path, started: float) -> ServingState:
    """Load the model, build the protocol, batcher and metrics, and warm the model up."""
    from mlflow_operator_serve import loading
    from mlflow_operator_serve.batcher import AdaptiveBatcher
    from mlflow_operator_serve.metrics import ServingMetrics
    from mlflow_operator_serve.predictor import PyfuncBatchModel
    from mlflow_operator_serve.protocol import ScoringProtocol

    model = loading.load_pyfunc(model_dir)
    protocol = ScoringProtocol(model)  # type: ignore[arg-type]
    if settings.warm_up:
        _warm_up(protocol, loading.serving_input_example(model_dir, model))
    identity = loading.identify(settings.model_uri)
    metrics = ServingMetrics(identity.name, identity.version)
    metrics.model_loaded(time.perf_counter() - started)
    # one run lookup and one MLflow client for both writers
    run = _version_run(settings) if settings.sample_rate > 0 or settings.drift else None
    drift = _drift_monitor(settings, metrics, run)
    batcher: AdaptiveBatcher[ParsedRequest, Any] = AdaptiveBatcher(
        PyfuncBatchModel(protocol, drift.observe if drift is not None else None),
        max_batch_size=settings.max_batch_size,
        max_batch_delay=settings.max_batch_delay_ms / 1000,
        observer=metrics,
    )
    # Start-up leaves millions of long-lived objects (modules, the model); unfrozen, the first
    # full collections under traffic walk them all, a latency spike each time. run() froze
    # the imports already: this walks only what the model load left.
    gc.collect()
    gc.freeze()
    gc.enable()  # off since run() began
    return ServingState(
        protocol,
        batcher,
        metrics,
        settings.timeout_seconds,
        _mirror(settings, metrics),
        _prediction_log(settings, metrics, run),
        drift,
    )


def _mirror(settings: ServeSettings, metrics: ServingMetrics) -> Mirror | None:
    if settings.mirror_config is None:
        return None
    from mlflow_operator_serve.mirror import Mirror, MirrorConfigFile

    config = MirrorConfigFile(settings.mirror_config)
    config.current()  # a bad file is reported at start, not at the first request
    return Mirror(config, metrics, timeout_seconds=settings.timeout_seconds)


def _version_run(settings: ServeSettings) -> VersionRun | None:
    """The run of the served version, where monitoring writes; None (warned) without one."""
    from mlflow_operator_serve import loading
    from mlflow_operator_serve.version_run import VersionRun

    if not settings.model_uri.startswith("models:/"):
        _logger.warning(
            "--sample-rate and --drift need a models:/ URI (they write to the version's run): "
            "off for %s", settings.model_uri,
        )  # fmt: skip
        return None
    identity = loading.identify(settings.model_uri)
    return VersionRun(identity.name, identity.version, settings.monitoring_run_id)


def _prediction_log(
    settings: ServeSettings, metrics: ServingMetrics, run: VersionRun | None
) -> PredictionLog | None:
    if settings.sample_rate <= 0 or run is None:
        return None
    from mlflow_operator_serve.prediction_log import PredictionLog

    return PredictionLog(
        model=metrics.model_name,
        version=metrics.model_version,
        sample_rate=settings.sample_rate,
        excluded=settings.sample_exclude,
        sink=run,
        counter=metrics,
    )


def _drift_monitor(
    settings: ServeSettings, metrics: ServingMetrics, run: VersionRun | None
) -> DriftMonitor | None:
    if not settings.drift or run is None:
        return None
    from mlflow_operator_serve.drift import DriftMonitor

    return DriftMonitor(
        version=metrics.model_version,
        reference_rows=settings.drift_reference_rows,
        excluded=frozenset(settings.sample_exclude),
        store=run,
        gauges=metrics,
    )


def _warm_up(protocol: ScoringProtocol, example: str | None) -> None:
    """One predict through the same path as a request, so the first client does not pay for
    lazy imports and first-call setup (schema enforcement, BLAS, JIT, CUDA context)."""
    from mlflow_operator_serve.protocol import Reply

    if example is None:
        _logger.info("the model has no serving input example; no warm-up predict")
        return
    started = time.perf_counter()
    try:
        parsed = protocol.parse(example.encode(), "application/json")
        if not isinstance(parsed, Reply):
            protocol.predictions_reply(protocol.predict(parsed), parsed.unwrapped)
    except Exception:  # a model may still serve requests its example fails
        _logger.warning("the warm-up predict failed; serving anyway", exc_info=True)
        return
    _logger.info("warm-up predict took %.3fs", time.perf_counter() - started)


async def serve_socket(state: ServingState, sock: socket.socket, drain_seconds: float) -> None:
    """Serve on a listening socket until SIGTERM/SIGINT, then drain and return."""
    app = build_app(state)
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=drain_seconds
    )
    await runner.setup()
    state.batcher.start()
    site = web.SockSite(runner, sock)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    _logger.info("serving on %s (pid %d)", site.name, os.getpid())
    await stop.wait()
    _logger.info("stopping: no new connections; draining in-flight requests")
    # Stops listening, waits for running handlers (up to drain_seconds), closes connections.
    await runner.cleanup()
    if state.mirror is not None:
        # After the handlers: the last requests' copies are in flight now, not before.
        await state.mirror.close()
    if state.prediction_log is not None:
        await asyncio.to_thread(state.prediction_log.close)
    await state.batcher.close()
    if state.drift is not None:
        await asyncio.to_thread(state.drift.close)
    _logger.info("stopped")


def run(settings: ServeSettings) -> int:
    """The whole `serve` command after option parsing; returns the exit code."""
    started = time.perf_counter()
    # Start-up is imports and the model load: hundreds of thousands of objects that all live
    # on. Collections while they pile up find nothing to free and cost a tenth of start-up;
    # prepare_state collects once and turns the collector back on.
    gc.disable()
    if settings.workers > 1:
        # Must be set before prometheus-client is imported: it picks file-backed values then.
        os.environ.setdefault(
            "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="mlflow-serving-metrics-")
        )
    from mlflow_operator_serve import loading
    from mlflow_operator_serve.workers import listening_socket, run_forked

    model_dir = loading.local_model_dir(settings)
    _import_all(model_dir, settings)
    if settings.workers == 1:
        state = prepare_state(settings, model_dir, started)
        sock = listening_socket(settings.host, settings.port)
        _logger.info("ready after %.2fs", time.perf_counter() - started)
        threading.Thread(
            target=loading.warn_about_environment, args=(model_dir,), daemon=True
        ).start()
        asyncio.run(serve_socket(state, sock, settings.drain_seconds))
        return 0

    # Shared by the workers through fork: the imports (the bulk of start-up) and the socket.
    # The model itself is loaded in each worker, not here: a model that starts threads
    # (OpenMP, BLAS) or a CUDA context at load time does not survive a fork.
    sock = listening_socket(settings.host, settings.port)

    def worker() -> int:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        state = prepare_state(settings, model_dir, started)
        _logger.info("worker %d ready after %.2fs", os.getpid(), time.perf_counter() - started)
        asyncio.run(serve_socket(state, sock, settings.drain_seconds))
        return 0

    _logger.info("starting %d workers", settings.workers)
    # the parent has nothing else to do while the workers load the model
    return run_forked(
        settings.workers, worker, then=lambda: loading.warn_about_environment(model_dir)
    )


def _import_all(model_dir: Path, settings: ServeSettings) -> None:
    """Import the model's flavor and the modules of ours that `settings` use, then freeze
    what they created.

    Frozen objects stay out of the collector: out of its full collections under traffic, and
    in the workers out of the pages it would otherwise write to (copy-on-write stays shared).
    Frozen without a collection first: the collector has been off since run() began, and
    collecting here would walk every object imported so far (0.20-0.25 s) to free about one
    MiB of cycles that import machinery left (measured on the iris and PyTorch models).
    """
    from mlflow_operator_serve import loading

    loading.import_flavor(model_dir)
    used = {
        "batcher": True, "labels": True, "metrics": True, "predictor": True, "protocol": True,
        "drift": settings.drift,
        "mirror": settings.mirror_config is not None,
        "prediction_log": settings.sample_rate > 0,
    }  # fmt: skip
    for module in (name for name, wanted in used.items() if wanted):
        importlib.import_module(f"mlflow_operator_serve.{module}")
    gc.freeze()
