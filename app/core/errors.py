"""One error hierarchy, rendered by one RFC 9457 ``application/problem+json`` handler."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.problems import ProblemType, for_status

PROBLEM_MEDIA_TYPE = "application/problem+json"

log = logging.getLogger("kokoma.errors")


class AppError(Exception):
    """Base of every domain error: a problem type of the registry (:mod:`app.core.problems`).

    Each subclass stands for one HTTP status (its general ``problem``); a raise site may name a
    more specific problem type of the same status: ``Conflict(detail, type_=ProblemType.X)``.
    ``status``, ``type_`` and ``title`` come from the problem type.
    """

    problem: ClassVar[ProblemType] = ProblemType.BAD_REQUEST

    def __init__(
        self,
        detail: str | None = None,
        *,
        type_: ProblemType | None = None,
        errors: Sequence[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        problem = self.problem if type_ is None else ProblemType(type_)
        if problem.status != self.problem.status:
            raise TypeError(
                f"problem type {problem.value!r} answers {problem.status}, "
                f"not {type(self).__name__}'s {self.problem.status}"
            )
        super().__init__(detail or problem.title)
        self.type_: ProblemType = problem
        self.status: int = problem.status
        self.title: str = problem.title
        self.detail: str = detail or problem.title
        self.errors = list(errors) if errors is not None else None
        self.headers = headers


class BadRequest(AppError):
    problem = ProblemType.BAD_REQUEST


class Unauthorized(AppError):
    problem = ProblemType.UNAUTHORIZED


class Forbidden(AppError):
    problem = ProblemType.FORBIDDEN


class NotFound(AppError):
    problem = ProblemType.NOT_FOUND


class NotAcceptable(AppError):
    problem = ProblemType.NOT_ACCEPTABLE


class Conflict(AppError):
    problem = ProblemType.CONFLICT


class PreconditionFailed(AppError):
    problem = ProblemType.PRECONDITION_FAILED


class RequestTimeout(AppError):
    problem = ProblemType.REQUEST_TIMEOUT


class PayloadTooLarge(AppError):
    problem = ProblemType.PAYLOAD_TOO_LARGE


class UnsupportedMediaType(AppError):
    problem = ProblemType.UNSUPPORTED_MEDIA_TYPE


class Unprocessable(AppError):
    problem = ProblemType.VALIDATION_ERROR

    @classmethod
    def for_field(cls, field: str, message: str, type_: str = "unknown_reference") -> Unprocessable:
        """A 422 about one body field (``errors: [{loc: ["body", field], msg, type}]``)."""
        return cls(message, errors=[{"loc": ["body", field], "msg": message, "type": type_}])


class ServiceUnavailable(AppError):
    problem = ProblemType.SERVICE_UNAVAILABLE


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
    problem: ProblemType,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The problem+json response for ``problem`` (status and title from the registry)."""
    body: dict[str, Any] = {
        "type": problem.uri,
        "title": problem.title,
        "status": problem.status,
        "detail": detail,
        "instance": request.url.path if request is not None else "",
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(
        body, status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def _clean_validation_errors(raw: Sequence[Any]) -> list[dict[str, Any]]:
    """Location, message and type only: never echo the submitted value (it may be personal)."""
    return [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type")}
        for err in raw
    ]


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
            request, exc.type_, exc.detail, errors=exc.errors, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(
            request,
            ProblemType.VALIDATION_ERROR,
            "The request is not valid; see errors.",
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
                ProblemType.VALIDATION_ERROR,
                "The request body could not be decoded.",
                errors=[{"loc": ["body"], "msg": "Body is not valid JSON", "type": "json_invalid"}],
            )
        headers = getattr(exc, "headers", None)
        if status == 405:
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        detail = exc.detail if isinstance(exc.detail, str) else phrase
        if status == 404 and detail == "Not Found":
            detail = f"No route matches {request.method} {request.url.path}."
        return problem_response(request, for_status(status), detail, headers=headers)

    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from app.core.db_errors import classify

    async def _database_problem(request: Request, exc: Exception) -> JSONResponse:
        problem = classify(exc)
        if problem is None:
            return await _unexpected(request, exc)
        level = logging.ERROR if problem.status >= 500 else logging.WARNING
        log.log(
            level,
            "database error on %s %s: %s",
            request.method,
            request.url.path,
            problem.type_.value,
            extra={"sqlstate": problem.sqlstate, "error": type(exc).__name__},
        )
        return problem_response(
            request,
            problem.type_,
            problem.detail,
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
            "unhandled error on %s %s",
            request.method,
            request.url.path,
            extra={"sqlstate": sqlstate(exc), "error": type(exc).__name__},
        )
        return problem_response(
            request, ProblemType.INTERNAL_ERROR, "An unexpected error occurred."
        )
