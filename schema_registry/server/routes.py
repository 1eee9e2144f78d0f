"""The Confluent REST API on aiohttp: paths, query flags, bodies and error answers.

Handlers only translate HTTP to :class:`Registry` calls and back; one middleware turns
every error into Confluent's body ``{"error_code": N, "message": "..."}``, and an outer one
gives every answer, errors included, the media type ``Accept`` asks for (``negotiate``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from schema_registry.errors import RegistryHTTPError, RegistryStoreError
from schema_registry.server.negotiate import V1, negotiate
from schema_registry.server.registry import Registry

log = logging.getLogger(__name__)

CONTENT_TYPE = V1  # what a handler writes; accept_middleware swaps in the negotiated type
ACCEPTED_BODY_TYPES = frozenset(
    {
        CONTENT_TYPE,
        "application/vnd.schemaregistry+json",
        "application/json",
        "application/octet-stream",  # Confluent accepts it; so do curl users who forget -H
    }
)
REGISTRY_KEY = web.AppKey("registry", Registry)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def answer(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, content_type=CONTENT_TYPE)


def _error_body(status: int, error_code: int, message: str) -> web.Response:
    return answer({"error_code": error_code, "message": message}, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RegistryHTTPError as exc:
        return _error_body(exc.status or 500, exc.error_code or exc.status or 500, exc.message)
    except RegistryStoreError as exc:
        log.error("schemas store failed", extra={"path": request.path, "error": str(exc)})
        return _error_body(500, 50001, f"Error in the backend data store: {exc}")
    except web.HTTPException as exc:  # aiohttp's own 404 / 405 for unknown routes
        if exc.status < 400:
            raise
        return _error_body(exc.status, exc.status, f"HTTP {exc.status} {exc.reason}")


@web.middleware
async def accept_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer in the media type ``Accept`` prefers (Confluent's order), or 406 when none fits."""
    media_type = negotiate(request.headers.get("Accept"))
    if media_type is None:
        return _error_body(406, 406, f"HTTP 406 Not Acceptable: {request.headers['Accept']!r}")
    response = await handler(request)
    if isinstance(response, web.Response):
        response.content_type = media_type
    return response


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "false").lower() == "true"


def _subject(request: web.Request) -> str:
    return request.match_info["subject"]


def _schema_id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError as exc:
        raise RegistryHTTPError("Schema not found", status=404, error_code=40403) from exc


async def _body(request: web.Request) -> dict[str, Any]:
    if request.body_exists and request.content_type not in ACCEPTED_BODY_TYPES:
        raise RegistryHTTPError(
            f"Unsupported content type {request.content_type!r}", status=415, error_code=415
        )
    try:
        body = json.loads(await request.text() or "{}")
    except ValueError as exc:
        raise RegistryHTTPError(f"Unrecognized JSON: {exc}", status=400, error_code=400) from exc
    if not isinstance(body, dict):
        raise RegistryHTTPError(
            "The request body must be a JSON object", status=400, error_code=400
        )
    return body


def _version_answer(record: Any) -> dict[str, Any]:
    return {
        "subject": record.subject,
        "version": record.version,
        "id": record.schema_id,
        "schema": record.schema_str,
    }


class Routes:
    """One method per endpoint; :func:`build_app` wires them to paths."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.state = registry.state

    async def root(self, request: web.Request) -> web.Response:
        return answer({})

    async def schema_types(self, request: web.Request) -> web.Response:
        return answer(["AVRO"])

    async def schema_by_id(self, request: web.Request) -> web.Response:
        return answer({"schema": self.registry.schema_by_id(_schema_id(request))})

    async def raw_schema_by_id(self, request: web.Request) -> web.Response:
        return answer(json.loads(self.registry.schema_by_id(_schema_id(request))))

    async def id_subjects(self, request: web.Request) -> web.Response:
        schema_id = _schema_id(request)
        self.registry.schema_by_id(schema_id)
        usages = self.state.usages(schema_id, deleted=_flag(request, "deleted"))
        return answer(sorted({r.subject for r in usages}))

    async def id_versions(self, request: web.Request) -> web.Response:
        schema_id = _schema_id(request)
        self.registry.schema_by_id(schema_id)
        usages = self.state.usages(schema_id, deleted=_flag(request, "deleted"))
        return answer([{"subject": r.subject, "version": r.version} for r in usages])

    async def subjects(self, request: web.Request) -> web.Response:
        prefix = request.query.get("subjectPrefix", "")
        names = self.state.subject_names(deleted=_flag(request, "deleted"))
        return answer([name for name in names if name.startswith(prefix)])

    async def versions(self, request: web.Request) -> web.Response:
        records = self.registry.live_versions(_subject(request), deleted=_flag(request, "deleted"))
        return answer([r.version for r in records])

    async def register(self, request: web.Request) -> web.Response:
        schema_id = await self.registry.register(_subject(request), await _body(request))
        return answer({"id": schema_id})

    async def get_version(self, request: web.Request) -> web.Response:
        record = self.registry.version(
            _subject(request), request.match_info["version"], deleted=_flag(request, "deleted")
        )
        return answer(_version_answer(record))

    async def get_raw_version(self, request: web.Request) -> web.Response:
        record = self.registry.version(
            _subject(request), request.match_info["version"], deleted=_flag(request, "deleted")
        )
        return answer(json.loads(record.schema_str))

    async def referenced_by(self, request: web.Request) -> web.Response:
        self.registry.version(_subject(request), request.match_info["version"])
        return answer([])  # references are not supported, so nothing refers to anything

    async def lookup(self, request: web.Request) -> web.Response:
        record = self.registry.lookup(
            _subject(request), await _body(request), deleted=_flag(request, "deleted")
        )
        return answer(_version_answer(record))

    async def delete_subject(self, request: web.Request) -> web.Response:
        versions = await self.registry.delete_subject(
            _subject(request), permanent=_flag(request, "permanent")
        )
        return answer(versions)

    async def delete_version(self, request: web.Request) -> web.Response:
        version = await self.registry.delete_version(
            _subject(request), request.match_info["version"], permanent=_flag(request, "permanent")
        )
        return answer(version)

    async def compatibility(self, request: web.Request) -> web.Response:
        messages = self.registry.check_compatibility(
            _subject(request), await _body(request), request.match_info.get("version")
        )
        result: dict[str, Any] = {"is_compatible": not messages}
        if _flag(request, "verbose"):
            result["messages"] = messages
        return answer(result)

    async def get_config(self, request: web.Request) -> web.Response:
        subject = request.match_info.get("subject")
        if subject is None:
            level = self.state.level(None)
        else:
            level = self.registry.subject_level(
                subject, default_to_global=_flag(request, "defaultToGlobal")
            )
        return answer({"compatibilityLevel": level})

    async def put_config(self, request: web.Request) -> web.Response:
        body = await _body(request)
        level = await self.registry.set_level(
            request.match_info.get("subject"), body.get("compatibility")
        )
        return answer({"compatibility": level})

    async def delete_config(self, request: web.Request) -> web.Response:
        old = await self.registry.delete_level(request.match_info.get("subject"))
        return answer({"compatibilityLevel": old})

    async def mode(self, request: web.Request) -> web.Response:
        return answer({"mode": "READWRITE"})  # modes (IMPORT, READONLY) are not supported


def build_app(registry: Registry) -> web.Application:
    """The aiohttp application serving ``registry`` under Confluent's paths."""
    app = web.Application(middlewares=[accept_middleware, errors_middleware])
    app[REGISTRY_KEY] = registry
    r = Routes(registry)
    subject = "/subjects/{subject}"
    version = subject + "/versions/{version}"
    app.router.add_get("/", r.root)
    app.router.add_get("/schemas/types", r.schema_types)
    app.router.add_get("/schemas/ids/{id}", r.schema_by_id)
    app.router.add_get("/schemas/ids/{id}/schema", r.raw_schema_by_id)
    app.router.add_get("/schemas/ids/{id}/subjects", r.id_subjects)
    app.router.add_get("/schemas/ids/{id}/versions", r.id_versions)
    app.router.add_get("/subjects", r.subjects)
    app.router.add_post(subject, r.lookup)
    app.router.add_delete(subject, r.delete_subject)
    app.router.add_get(subject + "/versions", r.versions)
    app.router.add_post(subject + "/versions", r.register)
    app.router.add_get(version, r.get_version)
    app.router.add_delete(version, r.delete_version)
    app.router.add_get(version + "/schema", r.get_raw_version)
    app.router.add_get(version + "/referencedby", r.referenced_by)
    app.router.add_post("/compatibility" + version, r.compatibility)
    app.router.add_post("/compatibility" + subject + "/versions", r.compatibility)
    for path in ("/config", "/config/{subject}"):
        app.router.add_get(path, r.get_config)
        app.router.add_put(path, r.put_config)
        app.router.add_delete(path, r.delete_config)
    app.router.add_get("/mode", r.mode)
    return app
