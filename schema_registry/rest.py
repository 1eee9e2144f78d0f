"""The registry REST API as transport-free request specs, plus connection options and errors.

The async client (:mod:`schema_registry.client`) and the sync one
(:mod:`schema_registry.sync_client`) both run these specs, so each endpoint's path, body
and answer parsing is written once. httpx errors and registry error bodies become
:class:`RegistryHTTPError` here, the one place httpx meets our error tree: its status,
the registry's error code and the ``Retry-After`` header are read here, and the error
decides from them whether it is ``retriable`` (the rule is in its docstring).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from schema_registry.errors import IncompatibleSchemaError, RegistryHTTPError
from streams.errors import parse_retry_after_s

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
ACCEPT = f"{CONTENT_TYPE}, application/vnd.schemaregistry+json, application/json"
DEFAULT_TIMEOUT_S = 10.0  # a registry call is a small JSON exchange; 10 s means it is down


@dataclass(frozen=True)
class RegistryConnection:
    """Where the registry is and how to authenticate; the password never shows in repr."""

    url: str
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    ca_path: str | None = None  # PEM bundle to verify the server with (default: system CAs)
    cert_path: str | None = None  # client certificate (mutual TLS)
    key_path: str | None = None  # its private key, if not inside cert_path
    timeout_s: float = DEFAULT_TIMEOUT_S

    def httpx_options(self) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client`` / ``httpx.AsyncClient``."""
        options: dict[str, Any] = {
            "base_url": self.url.rstrip("/") + "/",
            "timeout": httpx.Timeout(self.timeout_s),
            "headers": {"Accept": ACCEPT},
        }
        if self.username is not None:
            secret = self.password.get_secret_value() if self.password is not None else ""
            options["auth"] = httpx.BasicAuth(self.username, secret)
        if self.ca_path or self.cert_path:
            context = ssl.create_default_context(cafile=self.ca_path)
            if self.cert_path:
                context.load_cert_chain(self.cert_path, self.key_path)
            options["verify"] = context
        return options


@dataclass(frozen=True)
class RegisteredSchema:
    """One version of a subject, as the registry reports it."""

    subject: str
    version: int
    schema_id: int
    schema_str: str


@dataclass(frozen=True)
class Call:
    """One REST request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[Any], Any]
    params: dict[str, str] | None = None
    body: dict[str, Any] | None = None
    subject: str | None = None  # set on registrations: a 409 becomes IncompatibleSchemaError


def _subject(subject: str) -> str:
    return quote(subject, safe="")


def _registered(answer: Any) -> RegisteredSchema:
    return RegisteredSchema(
        subject=answer["subject"],
        version=int(answer["version"]),
        schema_id=int(answer["id"]),
        schema_str=answer["schema"],
    )


def _schema_body(schema_str: str) -> dict[str, Any]:
    return {"schema": schema_str, "schemaType": "AVRO"}


def register(subject: str, schema_str: str) -> Call:
    return Call(
        "POST",
        f"subjects/{_subject(subject)}/versions",
        lambda answer: int(answer["id"]),
        body=_schema_body(schema_str),
        subject=subject,
    )


def lookup(subject: str, schema_str: str) -> Call:
    return Call("POST", f"subjects/{_subject(subject)}", _registered, body=_schema_body(schema_str))


def get_schema(schema_id: int) -> Call:
    return Call("GET", f"schemas/ids/{int(schema_id)}", lambda answer: answer["schema"])


def get_version(subject: str, version: int | str = "latest") -> Call:
    return Call("GET", f"subjects/{_subject(subject)}/versions/{version}", _registered)


def get_subjects() -> Call:
    return Call("GET", "subjects", list)


def test_compatibility(subject: str, schema_str: str, version: int | str = "latest") -> Call:
    def parse(answer: Any) -> tuple[bool, list[str]]:
        return bool(answer["is_compatible"]), [str(m) for m in answer.get("messages") or []]

    return Call(
        "POST",
        f"compatibility/subjects/{_subject(subject)}/versions/{version}",
        parse,
        params={"verbose": "true"},
        body=_schema_body(schema_str),
    )


def get_config(subject: str | None = None) -> Call:
    if subject is None:
        return Call("GET", "config", lambda answer: answer["compatibilityLevel"])
    return Call(
        "GET",
        f"config/{_subject(subject)}",
        lambda answer: answer["compatibilityLevel"],
        params={"defaultToGlobal": "true"},
    )


def set_config(level: str, subject: str | None = None) -> Call:
    path = "config" if subject is None else f"config/{_subject(subject)}"
    return Call("PUT", path, lambda answer: answer["compatibility"], body={"compatibility": level})


def delete_subject(subject: str, *, permanent: bool = False) -> Call:
    params = {"permanent": "true"} if permanent else None
    return Call("DELETE", f"subjects/{_subject(subject)}", list, params=params)


def build_request(client: httpx.Client | httpx.AsyncClient, call: Call) -> httpx.Request:
    headers = {"Content-Type": CONTENT_TYPE} if call.body is not None else None
    return client.build_request(
        call.method, call.path, params=call.params, json=call.body, headers=headers
    )


def transport_error(exc: httpx.HTTPError, call: Call) -> RegistryHTTPError:
    """A request that got no usable answer: retriable."""
    return RegistryHTTPError(
        f"{call.method} {call.path}: no answer from the registry: {exc!r}", status=None
    )


def read_answer(response: httpx.Response, call: Call) -> Any:
    """The parsed answer of a successful call, or the registry's error translated."""
    if response.is_success:
        try:
            return call.parse(response.json())
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryHTTPError(
                f"{call.method} {call.path}: unexpected answer {response.text[:200]!r}",
                status=response.status_code,
            ) from exc
    try:
        body = response.json()
        error_code = int(body["error_code"])
        message = str(body.get("message", ""))
    except (ValueError, KeyError, TypeError):
        error_code, message = None, response.text[:200] or response.reason_phrase
    error = RegistryHTTPError(
        f"{call.method} {call.path}: {message}", status=response.status_code, error_code=error_code,
        retry_after_s=parse_retry_after_s(response.headers.get("Retry-After")),
    )
    if response.status_code == 409 and call.subject is not None:
        raise IncompatibleSchemaError(call.subject, [message]) from error
    raise error
