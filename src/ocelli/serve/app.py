"""The FastAPI app: OpenAI's chat-completions API over the batching engine.

Routes: POST /v1/chat/completions, GET /v1/models (both need an API key when keys are
set), GET /health, GET /metrics, and with `config.ui_path` the web chat (serve/ui.py)
there, with / redirecting to it. Every error is answered in OpenAI's error schema."""

# No `from __future__ import annotations`: FastAPI must evaluate the route signatures,
# whose dependencies are local to the functions that define the routes.

import hmac
import logging
import time
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ocelli import __version__
from ocelli.errors import OcelliError
from ocelli.serve import extensions
from ocelli.serve.config import ServeConfig
from ocelli.serve.engine import Engine
from ocelli.serve.errors import (
    ApiError,
    BadRequest,
    InternalError,
    InvalidRequest,
    NotFound,
    Overloaded,
    Unauthorized,
    from_library_error,
)
from ocelli.serve.fetch import ImageFetcher
from ocelli.serve.metrics import CONTENT_TYPE, ServerMetrics
from ocelli.serve.middleware import Guard
from ocelli.serve.prepare import RequestPreparer
from ocelli.serve.responses import ResponseMeta, event_stream, results, whole_response
from ocelli.serve.schema import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ErrorResponse,
    Health,
    ModelCard,
    ModelList,
)

log = logging.getLogger("ocelli.serve")
CHUNK_REF = "#/components/schemas/ChatCompletionChunk"
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 422, 429, 503)
}


@dataclass
class ServerState:
    engine: Engine
    config: ServeConfig
    preparer: RequestPreparer
    metrics: ServerMetrics
    draining: bool = False
    active: int = 0
    active_by_key: Counter = field(default_factory=Counter)
    started: int = field(default_factory=lambda: int(time.time()))
    _pipeline_path: extensions.PipelinePath | None = None

    def pipeline_path(self) -> extensions.PipelinePath:
        """The served weights outside the engine, built on first use (VCD, corrector)."""
        if self._pipeline_path is None:
            self._pipeline_path = extensions.PipelinePath(self.engine, self.config.max_image_pixels)
        return self._pipeline_path

    def acquire(self, key: str) -> None:
        """Admit one more request, or answer 429 (limits on the server and on each key)."""
        if self.active >= self.config.max_concurrent_requests:
            raise Overloaded(
                f"the server is at its limit of {self.config.max_concurrent_requests} "
                "concurrent requests; retry shortly",
                code="server_overloaded",
            )
        if self.active_by_key[key] >= self.config.max_concurrent_per_key:
            raise Overloaded(
                f"this API key has {self.config.max_concurrent_per_key} requests in flight, "
                "its limit; wait for one to finish",
                code="too_many_concurrent_requests",
            )
        self.active += 1
        self.active_by_key[key] += 1

    def release(self, key: str) -> None:
        self.active -= 1
        self.active_by_key[key] -= 1


def create_app(engine: Engine, config: ServeConfig, fetcher: ImageFetcher | None = None) -> FastAPI:
    """The app serving `engine`; `fetcher` overrides the one built from `config`."""
    if fetcher is None and config.allow_image_urls:
        fetcher = ImageFetcher(
            config.image_url_hosts,
            max_bytes=config.max_image_bytes,
            timeout_s=config.image_url_timeout_s,
            max_redirects=config.image_url_max_redirects,
        )
    metrics = ServerMetrics(engine)
    state = ServerState(engine, config, RequestPreparer(engine.processor, config, fetcher), metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.start()
        yield
        state.draining = True
        if not await run_in_threadpool(engine.shutdown, config.drain_timeout_s):
            log.warning("the engine did not finish its work within %s s", config.drain_timeout_s)

    app = FastAPI(
        title="ocelli serve",
        version=__version__,
        description="OpenAI-compatible chat completions for ocelli multimodal models.",
        lifespan=lifespan,
    )
    app.state.server = state
    app.openapi = lambda: _openapi_with_chunks(app)
    _add_error_handlers(app, metrics)
    _add_routes(app, state)
    if config.ui_path:
        from ocelli.serve.ui import mount_ui

        mount_ui(app, state, config.ui_path)
    app.add_middleware(
        Guard,
        max_body_bytes=config.max_body_bytes,
        metrics=metrics,
        is_draining=lambda: state.draining,
    )
    return app


def _openapi_with_chunks(app: FastAPI) -> dict[str, Any]:
    """FastAPI's description plus the streamed chunk's schema, which no route returns as
    JSON, so FastAPI would leave it out."""
    if app.openapi_schema is None:
        spec = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        chunk = ChatCompletionChunk.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(chunk.pop("$defs", {}))
        schemas["ChatCompletionChunk"] = chunk
        app.openapi_schema = spec
    return app.openapi_schema


def _api_key_checker(keys: tuple[str, ...]):
    bearer = HTTPBearer(auto_error=False, description="one of the keys given with --api-key")

    def check(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> str:
        """The caller's key ("" when the server has none)."""
        if not keys:
            return ""
        if credentials is None:
            raise Unauthorized(
                "no API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
            )
        given = credentials.credentials.encode()
        # compare_digest on every key: the time taken says nothing about which key is near.
        matches = [hmac.compare_digest(given, key.encode()) for key in keys]
        if not any(matches):
            raise Unauthorized("incorrect API key", code="invalid_api_key")
        return credentials.credentials

    return check


def _add_routes(app: FastAPI, state: ServerState) -> None:
    config, engine = state.config, state.engine
    authorized = _api_key_checker(config.api_keys)

    @app.get("/health", response_model=Health, responses={503: {"model": Health}})
    async def health() -> Any:
        body = Health(
            status="draining" if state.draining else "ok",
            running=engine.num_running,
            waiting=engine.num_waiting,
        )
        return JSONResponse(body.model_dump(), status_code=503 if state.draining else 200)

    if config.ui_path:

        @app.get("/", include_in_schema=False)
        async def root() -> RedirectResponse:
            return RedirectResponse(config.ui_path + "/")

    @app.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models", response_model=ModelList, responses=ERRORS)
    async def models(key: Annotated[str, Depends(authorized)]) -> ModelList:
        return ModelList(data=[ModelCard(id=config.served_model_name, created=state.started)])

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        responses={
            **ERRORS,
            200: {
                "content": {"text/event-stream": {"schema": {"$ref": CHUNK_REF}}},
                "description": "stream=false: a ChatCompletion; stream=true: server-sent "
                "events, each `data: <ChatCompletionChunk>`, then `data: [DONE]`",
            },
        },
    )
    async def chat_completions(
        body: ChatCompletionRequest, request: Request, key: Annotated[str, Depends(authorized)]
    ) -> Any:
        if body.model not in (config.served_model_name, "default"):
            raise NotFound(
                f"model {body.model!r} is not served here; use {config.served_model_name!r}",
                "model",
                "model_not_found",
            )
        state.acquire(key)
        try:
            return await _complete(state, body, request, key)
        except BaseException:
            state.release(key)
            raise


async def _complete(
    state: ServerState, body: ChatCompletionRequest, request: Request, key: str
) -> Any:
    """Prepare, submit and answer; the caller has acquired a slot, released here on success."""
    start = time.monotonic()
    options = body.ocelli
    try:
        extensions.check_options(body)
        prepared = await state.preparer.prepare(body)
        if options is not None and options.vcd is not None:  # not batched: serve/extensions.py
            handles = await extensions.vcd_handles(state.pipeline_path(), prepared, options.vcd)
        else:
            handles = [state.engine.submit(prepared.prompt, p) for p in prepared.params]
    except OcelliError as exc:
        raise from_library_error(exc) from None
    meta = ResponseMeta(model=state.config.served_model_name)
    if not body.stream:
        completions = await results(handles, request.is_disconnected)
        response = whole_response(meta, completions)
        if options is not None and options.correct:
            response = await extensions.correct_response(state.pipeline_path(), prepared, response)
        state.release(key)
        state.metrics.latency.observe(time.monotonic() - start)
        return response
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    async def stream():
        try:
            async for line in event_stream(
                meta,
                handles,
                include_usage,
                lambda: state.metrics.first_token.observe(time.monotonic() - start),
            ):
                yield line
            state.metrics.latency.observe(time.monotonic() - start)
        finally:
            state.release(key)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _add_error_handlers(app: FastAPI, metrics: ServerMetrics) -> None:
    def respond(error: ApiError) -> JSONResponse:
        metrics.errors.labels(error.code or error.type).inc()
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return respond(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return respond(_validation_error(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        error = ApiError(str(exc.detail), code=f"http_{exc.status_code}")
        error.status = exc.status_code
        return respond(error)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s", request.url.path)
        return respond(InternalError("internal error; see the server log", code="internal_error"))


def _validation_error(exc: RequestValidationError) -> ApiError:
    errors = exc.errors()
    first = errors[0] if errors else {}
    location = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return BadRequest(f"the body is not valid JSON: {first.get('msg')}", None, "invalid_json")
    summary = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
        for e in errors[:5]
    )
    return InvalidRequest(
        f"invalid request: {summary}", ".".join(location) or None, "invalid_request"
    )
