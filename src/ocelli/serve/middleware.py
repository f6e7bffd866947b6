"""ASGI middleware around the app: request bodies bounded, 503 while draining, and
every response counted by route and status.

Pure ASGI rather than Starlette's BaseHTTPMiddleware, which would buffer streamed
responses and hide client disconnects from them."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ocelli.serve.errors import ApiError, PayloadTooLarge, ShuttingDown
from ocelli.serve.metrics import ServerMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# Routes answered while draining: load balancers watch these to take the server out.
ALWAYS_OPEN = ("/health", "/metrics")


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        metrics: ServerMetrics,
        is_draining: Callable[[], bool],
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.is_draining = is_draining

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self._guarded(scope, receive, counting_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(path, str(status[0] if status else 0)).inc()

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.is_draining() and scope["path"] not in ALWAYS_OPEN:
            await _send_error(send, ShuttingDown("the server is shutting down; retry shortly"))
            return
        try:
            body = await self._read_body(scope, receive)
        except ApiError as exc:
            self.metrics.errors.labels(exc.code or "").inc()
            await _send_error(send, exc)
            return
        replayed = False

        async def replay() -> Message:
            # The body once, then the real channel, where a client's disconnect arrives.
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise self._too_large(int(declared))
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                raise self._too_large(len(body))
            if not message.get("more_body", False):
                break
        return bytes(body)

    def _too_large(self, size: int) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"the request body is {size:,}+ bytes, over the limit of {self.max_body_bytes:,}; "
            "send smaller or fewer images",
            None,
            "request_too_large",
        )


async def _send_error(send: Send, error: ApiError) -> None:
    payload = json.dumps(error.body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if error.status == 503:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
