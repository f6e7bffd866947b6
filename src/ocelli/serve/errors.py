"""Errors the API returns, in OpenAI's error schema.

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

Each class carries its HTTP status. Library errors a request can cause (a bad image,
a prompt with too many placeholders) are mapped onto these in `from_library_error`, so
a client sees a 4xx naming its input, never a 500."""

from __future__ import annotations

from typing import Any

from ocelli.errors import DataError, ImageError, OcelliError, PromptError


class ApiError(OcelliError):
    """An error answered to the client; subclasses fix the status and OpenAI `type`."""

    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401
    type = "authentication_error"


class NotFound(ApiError):
    status = 404


class PayloadTooLarge(ApiError):
    status = 413


class InvalidRequest(ApiError):
    """The body does not match the schema (wrong types, unknown fields)."""

    status = 422


class Overloaded(ApiError):
    status = 429
    type = "rate_limit_error"


class InternalError(ApiError):
    status = 500
    type = "server_error"


class ShuttingDown(ApiError):
    status = 503
    type = "server_error"


def from_library_error(exc: OcelliError, param: str | None = "messages") -> ApiError:
    """The API error for an error raised by ocelli's data or model code."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ImageError):
        return BadRequest(str(exc), param=param, code="invalid_image")
    if isinstance(exc, PromptError):
        return BadRequest(str(exc), param=param, code="invalid_prompt")
    if isinstance(exc, DataError):
        return BadRequest(str(exc), param=param, code="invalid_messages")
    return BadRequest(str(exc), param=param)
