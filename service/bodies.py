"""Reading a request body: JSON media type first, then at most `max_body_bytes`, refused before parsing.

Every route that takes a body reads it here (scoring and feedback alike), so the limit the settings
promise holds everywhere: a body larger than the limit is a 413 before a byte of it is parsed.
"""

from __future__ import annotations

import asyncio

from fastapi import Request

from model.errors import PayloadTooLarge, Problem
from service.errors import RequestTimeout, require_json_media


async def read_json_body(request: Request) -> bytes:
    """The raw body, refused early when it is not JSON or larger than the limit."""
    require_json_media(request.headers.get("content-type", ""), request.headers.get("content-encoding", ""))
    limit: int = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, int(declared))
    chunks: list[bytes] = []
    size = 0
    deadline: float = request.app.state.settings.body_timeout_seconds
    try:
        async with asyncio.timeout(deadline):  # a stalled body must not hold its connection and bytes for good
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit, None)
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(f"request body not received within {deadline:g} s (DEALSCORE_BODY_TIMEOUT_SECONDS); "
                             "send it faster, in smaller batches, or ask for a longer limit",
                             [Problem("body", f"the whole body within {deadline:g} s",
                                      f"{size:,} bytes by then")]) from None
    body = b"".join(chunks)
    # A UTF-8 byte order mark, which some Windows tools write: RFC 8259 (8.1) lets a parser ignore it, and the
    # JSON parsers here called it a syntax error at line 1 column 1.
    return body[3:] if body.startswith(UTF8_BOM) else body


UTF8_BOM = b"\xef\xbb\xbf"


def _too_large(limit: int, size: int | None) -> PayloadTooLarge:
    got = f"{size:,} bytes" if size is not None else f"more than {limit:,} bytes"
    return PayloadTooLarge(f"request body too large: at most {limit:,} bytes are accepted; split the batch",
                           [Problem("body", f"at most {limit} bytes", got)])
