"""Every failure the API reports, as (HTTP status, code). Bodies are always {"error": {"code", "message"}}."""
from __future__ import annotations

from .policy import CapabilityRefused
from .registry import InvalidArguments, ToolError, ToolTimeout, UnknownTool


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


def from_exception(error: Exception) -> ApiError:
    if isinstance(error, ApiError):
        return error
    if isinstance(error, UnknownTool):
        return ApiError(404, "unknown_tool", f"no tool named '{error.args[0]}'")
    if isinstance(error, CapabilityRefused):
        return ApiError(403, "capability_refused", str(error), capabilities=error.missing)
    if isinstance(error, InvalidArguments):
        return ApiError(400, "invalid_arguments", str(error), details=error.errors)
    if isinstance(error, ToolTimeout):
        return ApiError(504, "tool_timeout", str(error))
    if isinstance(error, ToolError):
        return ApiError(502, "tool_failed", str(error))
    return ApiError(500, "internal_error", "internal error (see the service log)")
