"""One error hierarchy, rendered by one RFC 9457 ``application/problem+json`` handler."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "/problems/"

log = logging.getLogger("kokoma.errors")


class AppError(Exception):
    """Base of every domain error. ``type_`` is a stable slug, ``status`` the HTTP status."""

    status: int = 400
    type_: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        type_: str | None = None,
        title: str | None = None,
        errors: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if type_ is not None:
            self.type_ = type_
        if title is not None:
            self.title = title
        self.errors = list(errors) if errors is not None else None
        self.headers = headers


class BadRequest(AppError):
    status, type_, title = 400, "bad-request", "Bad request"


class Unauthorized(AppError):
    status, type_, title = 401, "unauthorized", "Authentication required"


class Forbidden(AppError):
    status, type_, title = 403, "forbidden", "Forbidden"


class NotFound(AppError):
    status, type_, title = 404, "not-found", "Not found"


class Conflict(AppError):
    status, type_, title = 409, "conflict", "Conflict"


class PreconditionFailed(AppError):
    status, type_, title = 412, "precondition-failed", "Precondition failed"


class RequestTimeout(AppError):
    status, type_, title = 408, "request-timeout", "Request timeout"


class PayloadTooLarge(AppError):
    status, type_, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(AppError):
    status, type_, title = 415, "unsupported-media-type", "Unsupported media type"


class Unprocessable(AppError):
    status, type_, title = 422, "validation-error", "Validation error"

    @classmethod
    def for_field(
        cls, field: str, message: str, type_: str = "unknown_reference"
    ) -> Unprocessable:
        """A 422 about one body field (``errors: [{loc: ["body", field], msg, type}]``)."""
        return cls(message, errors=[{"loc": ["body", field], "msg": message, "type": type_}])


class ServiceUnavailable(AppError):
    status, type_, title = 503, "service-unavailable", "Service unavailable"


class ProblemError(BaseModel):
    """One validation error: where (``loc``), what (``msg``), which rule (``type``)."""

    loc: list[str | int]
    msg: str
    type: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details (validation problems add ``errors``)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[ProblemError] | None = None


def problem_response(
    request: Request | None,
    *,
    status: int,
    type_: str,
    title: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + type_,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path if request is not None else "",
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _clean_validation_errors(raw: Sequence[Any]) -> list[dict[str, Any]]:
    """Location, message and type only: never echo the submitted value (it may be personal)."""
    return [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in raw
    ]


_SLUG_BY_STATUS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    412: "precondition-failed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "too-many-requests",
}


def allowed_methods(request: Request) -> list[str]:
    """Every method of every route whose path matches the request's — a 405 from the router
    names only the methods of the first route it matched (``GET`` and ``POST`` of one path may
    live in different routes)."""
    from fastapi.routing import iter_route_contexts
    from starlette.routing import compile_path

    methods: set[str] = set()
    for context in iter_route_contexts(request.app.routes):
        path = getattr(context, "path_format", None) or getattr(context, "path", None)
        route_methods = getattr(context, "methods", None)
        if not path or not route_methods:
            continue
        if compile_path(path)[0].match(request.url.path):
            methods.update(route_methods)
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return sorted(methods, key=lambda m: (order.index(m) if m in order else len(order), m))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> JSONResponse:
        return problem_response(
            request,
            status=exc.status,
            type_=exc.type_,
            title=exc.title,
            detail=exc.detail,
            errors=exc.errors,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(
            request,
            status=422,
            type_="validation-error",
            title="Validation error",
            detail="The request is not valid; see errors.",
            errors=_clean_validation_errors(exc.errors()),
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        if status == 400 and exc.detail == "There was an error parsing the body":
            # FastAPI's answer to a body it cannot decode (e.g. invalid UTF-8); malformed JSON
            # is already a 422 ``json_invalid``, so this is one too.
            return problem_response(
                request,
                status=422,
                type_="validation-error",
                title="Validation error",
                detail="The request body could not be decoded.",
                errors=[{"loc": ["body"], "msg": "Body is not valid JSON", "type": "json_invalid"}],
            )
        headers = getattr(exc, "headers", None)
        if status == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        detail = exc.detail if isinstance(exc.detail, str) else title
        if status == 404 and detail == "Not Found":
            detail = f"No route matches {request.method} {request.url.path}."
        return problem_response(
            request,
            status=status,
            type_=_SLUG_BY_STATUS.get(status, "http-error"),
            title=title,
            detail=detail,
            headers=headers,
        )

    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from app.core.db_errors import classify

    async def _database_problem(request: Request, exc: Exception) -> JSONResponse:
        problem = classify(exc)
        if problem is None:
            return await _unexpected(request, exc)
        level = logging.ERROR if problem.status >= 500 else logging.WARNING
        log.log(
            level, "database error on %s %s: %s", request.method, request.url.path,
            problem.type_,
            extra={"sqlstate": problem.sqlstate, "error": type(exc).__name__},
        )
        return problem_response(
            request,
            status=problem.status,
            type_=problem.type_,
            title=problem.title,
            detail=problem.detail,
            headers={"Retry-After": str(problem.retry_after)} if problem.retry_after else None,
        )

    # Registered by class (not under ``Exception``) so that they are answered inside the
    # middleware stack: the access log, metrics and X-Request-ID see the problem.
    app.add_exception_handler(DBAPIError, _database_problem)
    app.add_exception_handler(PoolTimeout, _database_problem)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, DBAPIError | PoolTimeout) and classify(exc) is not None:
            return await _database_problem(request, exc)  # raised in a middleware
        from app.core.db_errors import sqlstate

        log.exception(
            "unhandled error on %s %s", request.method, request.url.path,
            extra={"sqlstate": sqlstate(exc), "error": type(exc).__name__},
        )
        return problem_response(
            request,
            status=500,
            type_="internal-error",
            title="Internal server error",
            detail="An unexpected error occurred.",
        )
