"""The emulator as a WSGI application: the Experience API, the control API and mounts."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote

from django_experience.emulator import service
from django_experience.emulator.errors import (
    APIError,
    ConfigError,
    DropConnection,
    config_not_found,
    invalid_data,
)
from django_experience.emulator.faults import Faults
from django_experience.emulator.mounts import Mount, StartResponse, WSGIApp, build_mounts
from django_experience.emulator.state import EmulatorState
from django_experience.emulator.stats import DROPPED
from django_experience.emulator.validation import (
    events_of,
    options_of,
    parse_body,
    validate_batch,
    validate_profile_id,
)

logger = logging.getLogger("django_experience.emulator")

API_PATH = re.compile(
    r"^/v2/organizations/(?P<org>[^/]+)/environments/(?P<env>[^/]+)/"
    r"(?P<resource>profiles(?:/(?P<pid>[^/]+))?|events|import/events)/?$"
)
CONTROL_PREFIX = "/__emulator__/"
MALFORMED_BODY = b'{"data": {"profile": {"id": "truncated'
CORS_HEADERS = [
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS"),
    ("Access-Control-Expose-Headers", "Retry-After, Content-Length"),
    ("Access-Control-Max-Age", "600"),
]
DEFAULT_ALLOWED_HEADERS = "Content-Type, X-Force-IP, Authorization"
STATUS_TEXT = {
    200: "OK", 202: "Accepted", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
    422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}


class Response:
    def __init__(self, status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
                 trickle_ms: float = 0) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []
        self.trickle_ms = trickle_ms


def envelope(data: Any) -> bytes:
    return json.dumps({"data": data, "error": None, "message": "ok"}).encode("utf-8")


def error_body(error: APIError) -> bytes:
    return json.dumps(
        {"message": error.message, "data": {}, "error": {"code": error.code}}
    ).encode("utf-8")


def json_response(data: Any, status: int = 200) -> Response:
    return Response(status, envelope(data), [("Content-Type", "application/json; charset=utf-8")])


def error_response(error: APIError) -> Response:
    headers = [("Content-Type", "application/json; charset=utf-8")]
    return Response(error.status, error_body(error), headers)


def _text_path(environ: Mapping[str, Any]) -> str:
    raw = str(environ.get("PATH_INFO") or "/")
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


# The documented code of each documented status; other statuses carry a code naming the fault.
_FAULT_CODES = {400: "ERR_INVALID_DATA", 404: "ERR_PROFILE_NOT_FOUND", 429: "ERR_PROFILE_OVERLOAD"}


def _fault_code(status: int) -> str:
    if status >= 500:
        return "ERR_INTERNAL_SERVER_ERROR"
    return _FAULT_CODES.get(status, "ERR_INJECTED_FAULT")


def _match_api_path(path: str, environ: Mapping[str, Any]) -> dict[str, str | None] | None:
    """The route's parts (organization, environment, resource, profile id), or ``None``.

    ``PATH_INFO`` is percent-decoded, so an id holding an encoded slash (``a%2Fb``) would split
    in two there. Where the server passes the request's raw target (``RAW_URI``, as the
    built-in server and gunicorn do, or uWSGI's ``REQUEST_URI``), the route is matched on that
    and each part decoded afterwards.
    """
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if isinstance(raw, str) and raw.startswith("/"):
        match = API_PATH.match(raw.partition("?")[0])
        if match is None:
            return None
        return {key: None if value is None else unquote(value)
                for key, value in match.groupdict().items()}
    match = API_PATH.match(path)
    return None if match is None else match.groupdict()


class EmulatorApp:
    """WSGI callable serving one ``EmulatorState``."""

    def __init__(self, state: EmulatorState, mounts: Mapping[str, WSGIApp | Mount] | None = None):
        self.state = state
        self.mounts = build_mounts(mounts)
        state.mount_hooks = [m.reset for m in self.mounts.values() if m.reset is not None]
        state.mount_snapshots = {
            m.name: m.snapshot for m in self.mounts.values() if m.snapshot is not None
        }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = _text_path(environ)
        for prefix, mount in self.mounts.items():
            if path.startswith(prefix) or path == prefix[:-1]:
                return self._delegate(mount, environ, start_response)
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        if method == "OPTIONS":
            response = Response(204)
        elif path.startswith(CONTROL_PREFIX):
            response = self._guarded(lambda: self.control(method, path, environ))
        else:
            response = self.api(method, path, environ)
        return self._send(response, environ, start_response)

    # -- plumbing -------------------------------------------------------------------------

    def _delegate(self, mount: Mount, environ: dict[str, Any],
                  start_response: StartResponse) -> Iterable[bytes]:
        environ = dict(environ)
        script_name = mount.prefix.rstrip("/")
        raw_path = str(environ.get("PATH_INFO") or "/")
        environ["SCRIPT_NAME"] = str(environ.get("SCRIPT_NAME", "")) + script_name
        environ["PATH_INFO"] = raw_path[len(script_name):] or "/"
        return mount.app(environ, start_response)

    def _send(self, response: Response, environ: Mapping[str, Any],
              start_response: StartResponse) -> Iterable[bytes]:
        requested = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS")
        allowed = str(requested) if requested else DEFAULT_ALLOWED_HEADERS
        headers = [*response.headers, *CORS_HEADERS, ("Access-Control-Allow-Headers", allowed),
                   ("Content-Length", str(len(response.body)))]
        status = f"{response.status} {STATUS_TEXT.get(response.status, 'Unknown')}"
        start_response(status, headers)
        if environ.get("REQUEST_METHOD") == "HEAD" or not response.body:
            return [b""]
        if response.trickle_ms > 0:
            return _trickle(response.body, response.trickle_ms)
        return [response.body]

    def _guarded(self, handler: Callable[[], Response]) -> Response:
        try:
            return handler()
        except APIError as exc:
            return error_response(exc)
        except Exception:
            logger.exception("emulator failed to handle a request")
            return error_response(
                APIError(500, "ERR_INTERNAL_SERVER_ERROR", "Unhandled emulator error")
            )

    def _read_body(self, environ: Mapping[str, Any]) -> bytes:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError as exc:
            raise invalid_data("Content-Length is not a number") from exc
        if length > self.state.max_body_bytes:
            raise APIError(413, "ERR_INVALID_DATA",
                           f"Request body of {length} bytes exceeds the limit of "
                           f"{self.state.max_body_bytes} bytes")
        if length <= 0:
            return b""
        stream = environ["wsgi.input"]
        return bytes(stream.read(length))

    # -- Experience API -------------------------------------------------------------------

    def api(self, method: str, path: str, environ: Mapping[str, Any]) -> Response:
        match = _match_api_path(path, environ)
        if match is None:
            return error_response(APIError(404, "ERR_NOT_FOUND", f"No endpoint at {path}"))
        resource = str(match["resource"])
        endpoint = _endpoint(method, resource)
        if endpoint is None:
            return error_response(APIError(
                405, "ERR_METHOD_NOT_ALLOWED", f"{method} is not allowed on {path}"))
        self.state.stats.receive(endpoint)
        generation = self.state.generation
        response = self._faulted(endpoint)
        if self.state.generation != generation:
            raise DropConnection()  # the emulator was reset meanwhile: this request is gone
        if response is None:
            response = self._guarded(
                lambda: self._handle(
                    endpoint, str(match["org"]), str(match["env"]), match["pid"], environ
                )
            )
            trickle = self.state.faults.slow_body_ms
            if trickle > 0:
                response.trickle_ms = trickle
        self.state.stats.record(endpoint, response.status)
        return response

    def _faulted(self, endpoint: str) -> Response | None:
        faults = self.state.faults
        if not faults.active:
            return None
        dice = self.state.dice
        if faults.latency_ms > 0:
            time.sleep(faults.latency_ms / 1000.0)
        if dice.roll(faults.drop_rate):
            self.state.stats.record(endpoint, DROPPED)
            raise DropConnection()
        if dice.roll(faults.overload_rate):
            response = error_response(APIError(
                429, "ERR_PROFILE_OVERLOAD", "Too many concurrent requests (injected fault)"))
            if faults.retry_after is not None:
                response.headers.append(("Retry-After", f"{faults.retry_after:g}"))
            return response
        if dice.roll(faults.error_rate):
            status = faults.error_status
            return error_response(APIError(status, _fault_code(status), "Injected fault"))
        if dice.roll(faults.malformed_rate):
            return Response(200, MALFORMED_BODY,
                            [("Content-Type", "application/json; charset=utf-8")])
        return None

    def _handle(self, endpoint: str, organization: str, environment: str,
                profile_id: str | None, environ: Mapping[str, Any]) -> Response:
        query = parse_qs(str(environ.get("QUERY_STRING") or ""), keep_blank_values=True)
        kinds = query.get("type")
        kind = kinds[0] if kinds else None
        if kind not in (None, "preflight"):
            raise invalid_data(f"Query parameter type must be 'preflight', got {kind!r}")
        preflight = kind == "preflight"
        if endpoint == "import":
            body = self._read_body(environ)
            self.state.enqueue_import(organization, environment, body)
            return json_response({"message": "Events accepted."})
        if not self.state.allows(organization, environment):
            raise config_not_found(organization, environment)
        if profile_id is not None:
            validate_profile_id(profile_id)
        state = self.state
        if endpoint in ("create", "update", "batch"):
            body_data = parse_body(self._read_body(environ))
            events = events_of(body_data)
            options = options_of(body_data)
            with state.store.locked(state.overload_wait) as locks:
                if endpoint == "batch":
                    anonymous_ids = validate_batch(events)
                    tx = state.transaction(organization, environment, locks=locks)
                    profiles = service.upsert_profiles(tx, anonymous_ids, events)
                    return json_response({"profiles": profiles})
                tx = state.transaction(organization, environment, preflight=preflight,
                                       locks=locks)
                if endpoint == "create":
                    data = service.create_profile(tx, events, options)
                else:
                    assert profile_id is not None
                    data = service.update_profile(tx, profile_id, events, options)
                return json_response(data)
        assert profile_id is not None
        with state.store.locked(state.overload_wait) as locks:
            tx = state.transaction(organization, environment, locks=locks)
            if endpoint == "get":
                return json_response(service.get_profile(tx, profile_id))
            service.delete_profile(tx, profile_id)
            return json_response({})

    # -- control API ----------------------------------------------------------------------

    def control(self, method: str, path: str, environ: Mapping[str, Any]) -> Response:
        route = path[len(CONTROL_PREFIX):].rstrip("/")
        state = self.state
        if route == "profiles" and method == "GET":
            return json_response({"profiles": state.profiles_json()})
        if route.startswith("profiles/") and method == "GET":
            profile_id = route[len("profiles/"):]
            profile = state.profile_json(profile_id)
            if profile is None:
                raise APIError(404, "ERR_PROFILE_NOT_FOUND", f"Profile '{profile_id}' not found")
            return json_response(profile)
        if route == "reset" and method == "POST":
            state.reset()
            return json_response({})
        if route == "config" and method == "GET":
            return json_response(state.config_json())
        if route == "config" and method == "PUT":
            try:
                state.configure(parse_body(self._read_body(environ)))
            except ConfigError as exc:
                raise invalid_data(f"Invalid emulator config: {exc}") from exc
            return json_response(state.config_json())
        if route == "faults" and method == "GET":
            return json_response(state.faults.to_json())
        if route == "faults" and method in ("POST", "PUT"):
            raw = self._read_body(environ)
            try:
                faults = Faults.from_json(parse_body(raw) if raw.strip() else {})
            except ConfigError as exc:
                raise invalid_data(f"Invalid faults: {exc}") from exc
            state.set_faults(faults)
            return json_response(faults.to_json())
        if route == "faults" and method == "DELETE":
            state.set_faults(Faults())
            return json_response(state.faults.to_json())
        if route == "stats" and method == "GET":
            return json_response(state.stats_json())
        if route == "destinations" and method == "GET":
            return json_response(state.destinations_json())
        if route == "restrict" and method in ("POST", "PUT"):
            data = parse_body(self._read_body(environ))
            organization = data.get("organization")
            environments = data.get("environments")
            if organization is not None and not isinstance(organization, str):
                raise invalid_data("organization must be a string or null")
            if environments is not None and (
                not isinstance(environments, list)
                or not all(isinstance(e, str) for e in environments)
            ):
                raise invalid_data("environments must be a list of strings")
            state.restrict(organization, environments)
            return json_response({"organization": organization, "environments": environments})
        if route == "health" and method == "GET":
            return json_response({"status": "ok"})
        raise APIError(404, "ERR_NOT_FOUND", f"No control endpoint {method} {path}")


def _endpoint(method: str, resource: str) -> str | None:
    if resource == "profiles":
        return "create" if method == "POST" else None
    if resource.startswith("profiles/"):
        return {"POST": "update", "GET": "get", "DELETE": "delete"}.get(method)
    if resource == "events":
        return "batch" if method == "POST" else None
    return "import" if method == "POST" else None


def _trickle(body: bytes, total_ms: float) -> Iterator[bytes]:
    pieces = max(1, min(10, len(body)))
    size = -(-len(body) // pieces)
    pause = total_ms / 1000.0 / pieces
    for start in range(0, len(body), size):
        time.sleep(pause)
        yield body[start:start + size]


def make_app(
    state: EmulatorState | None = None,
    mounts: Mapping[str, WSGIApp | Mount] | None = None,
) -> EmulatorApp:
    """The emulator's WSGI app for ``state`` (a fresh one by default), with ``mounts``."""
    return EmulatorApp(state if state is not None else EmulatorState(), mounts)
