"""Bearer-token authentication, the request body size limit and a JSON nesting limit, as one ASGI middleware.

Both checks run before FastAPI parses anything: an unauthenticated client gets 401 whatever its
body, and a body over the limit gets 413 without being buffered past the limit. The token is
compared in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

#: Environment variable holding the service's bearer token.
TOKEN_ENV = "SAFETEXT_API_TOKEN"
#: Shortest token accepted: shorter secrets are guessable.
MIN_TOKEN_CHARS = 16

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


def load_token(token_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The service token from ``token_file`` (when given) or the ``SAFETEXT_API_TOKEN`` variable.

    Surrounding whitespace (a trailing newline in the file) is stripped.

    Args:
        token_file: a file whose content is the token; it wins over the environment.
        environ: the environment to read (default: ``os.environ``).

    Returns:
        The token, or None when neither source sets one.

    Raises:
        ValueError: the file is missing, empty, or the token is shorter than 16 characters.
    """
    environ = os.environ if environ is None else environ
    if token_file is not None:
        path = Path(token_file)
        if not path.is_file():
            raise ValueError(f"--token-file {path}: no such file; write the token into it or set {TOKEN_ENV}")
        token, source = path.read_text(encoding="utf-8").strip(), f"--token-file {path}"
    elif environ.get(TOKEN_ENV):
        token, source = environ[TOKEN_ENV].strip(), TOKEN_ENV
    else:
        return None
    validate_token(token, source)
    return token


def validate_token(token: str, source: str = "token") -> None:
    """Refuse empty or short tokens (``source`` names where the token came from in the message)."""
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(
            f"{source}: the token has {len(token)} characters; use at least {MIN_TOKEN_CHARS} random "
            "characters (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )


def token_matches(expected: str, authorization: str | None) -> bool:
    """True when the ``Authorization`` header carries ``Bearer <expected>`` (constant-time compare)."""
    if not authorization:
        return False
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode("utf-8"), expected.encode("utf-8"))


class RequestGuardMiddleware:
    """ASGI middleware: 401 without the right bearer token, 413 for bodies over ``max_body_bytes``.

    Args:
        app: the wrapped ASGI application.
        token: the expected bearer token; None disables authentication (``--insecure-no-auth``).
        max_body_bytes: largest request body accepted.
        max_json_depth: deepest nesting of ``[`` and ``{`` accepted in a body (422 beyond, before the
            JSON parser recurses into it).
        public_paths: paths served without a token (``/healthz``).
        on_response: called with ``(path, status)`` for every HTTP response (metrics).
        refuse_early: called with the scope of an authenticated request before its body is read; a
            ``(status, error, detail, headers)`` answer is sent at once instead of reading the body
            (the scan rate limit: a throttled client's flood costs no JSON parsing), None goes on.
    """

    def __init__(
        self,
        app: Any,
        *,
        token: str | None,
        max_body_bytes: int,
        max_json_depth: int = 32,
        public_paths: tuple[str, ...] = ("/healthz",),
        on_response: Callable[[str, int], None] | None = None,
        refuse_early: Callable[[Scope], tuple[int, str, str, dict[str, str]] | None] | None = None,
    ) -> None:
        self.app = app
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.public_paths = frozenset(public_paths)
        self.on_response = on_response
        self.refuse_early = refuse_early

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        send = self._observed(path, send)
        if self.token is not None and path not in self.public_paths:
            authorization = _header(scope, b"authorization")
            if not token_matches(self.token, authorization):
                detail = "invalid bearer token" if authorization else "missing bearer token"
                await _reply(send, 401, "unauthorized", f"{detail}; send 'Authorization: Bearer <token>'",
                             headers=[(b"www-authenticate", b'Bearer realm="safetext"')])
                return
        if self.refuse_early is not None:
            refusal = self.refuse_early(scope)
            if refusal is not None:
                status, error, detail, headers = refusal
                await _reply(send, status, error, detail,
                             headers=[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()])
                return
        if scope.get("method") in ("POST", "PUT", "PATCH"):
            declared = _header(scope, b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                await self._too_large(send, int(declared))
                return
            body, more, disconnected = await _read_body(receive, self.max_body_bytes)
            if disconnected:
                return
            if more:
                await self._too_large(send, None)
                return
            depth = json_depth(body)
            if depth > self.max_json_depth:
                await _reply(send, 422, "invalid_request",
                             f"body: the JSON is nested {depth} levels deep; the limit is {self.max_json_depth} "
                             "(send a flat object such as {\"prompt\": \"...\"})")
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _too_large(self, send: Send, size: int | None) -> None:
        got = f"{size} bytes" if size is not None else "more"
        await _reply(send, 413, "payload_too_large",
                     f"request body is {got}; the limit is {self.max_body_bytes} bytes (shorten the prompt)")

    def _observed(self, path: str, send: Send) -> Send:
        if self.on_response is None:
            return send
        on_response = self.on_response

        async def observed_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                on_response(path, int(message["status"]))
            await send(message)

        return observed_send


def json_depth(body: bytes) -> int:
    """Deepest nesting of arrays and objects in ``body`` (strings skipped), in one linear pass.

    Example:
        >>> json_depth(b'{"a": [1, {"b": "[[["}]}')
        3
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool, bool]:
    """Read the body up to ``limit`` bytes: ``(body, exceeded, client_disconnected)``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", False, True
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True, False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False, False


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _reply(send: Send, status: int, error: str, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps({"error": error, "detail": detail}).encode("utf-8")
    all_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers + (headers or [])})
    await send({"type": "http.response.body", "body": payload})
