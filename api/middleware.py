"""ASGI guards that run before any body is parsed."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def _send_error(send: Send, status: int, code: str, detail: str) -> None:
    # Same bytes as JSONResponse, so every error looks alike whoever answers.
    body = json.dumps({"error": code, "detail": detail}, ensure_ascii=False, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    """Reject NUL in URLs, oversized bodies (413) and non-JSON bodies (415), with the error contract."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _has_encoded_nul(scope):
            await _send_error(send, 400, "invalid_characters", "NUL characters are not allowed in URLs")
            return
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                await _send_error(send, 400, "bad_request", "invalid Content-Length")
                return
            if declared > self.max_bytes:
                await _send_error(send, 413, "payload_too_large", f"the body exceeds {self.max_bytes} bytes")
                return
            if declared > 0 and not _is_json(headers.get(b"content-type", b"")):
                await _send_error(send, 415, "unsupported_media_type", "send the body as application/json")
                return
        elif b"transfer-encoding" in headers and not _is_json(headers.get(b"content-type", b"")):
            await _send_error(send, 415, "unsupported_media_type", "send the body as application/json")
            return

        received = 0
        response_started = False
        rejected = False

        async def counting_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer now and tell the app the client went away; whatever it
                    # sends afterwards is dropped.
                    rejected = True
                    if not response_started:
                        await _send_error(
                            send, 413, "payload_too_large", f"the body exceeds {self.max_bytes} bytes"
                        )
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if rejected:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, counting_receive, guarded_send)


def _has_encoded_nul(scope: Scope) -> bool:
    raw = (scope.get("raw_path") or scope["path"].encode()) + b"?" + scope.get("query_string", b"")
    return b"%00" in raw or b"\x00" in raw


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))
