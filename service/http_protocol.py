"""The HTTP protocol the server runs: uvicorn's httptools one, with a bound on the size of a request's head.

uvicorn reads a request's head (its request line and headers) before the app sees anything, and with httptools it
set no bound on it: a security review sent one header of 100 MB (answered 200 after 21 s, 13.6 s of the worker's
CPU, its event loop blocked meanwhile) and 30 MB of 6-byte headers (the worker grew from 508 MB to 1,062 MB), on an
open route, with no token, whatever the settings. Beyond MAX_HEAD_BYTES the head is refused here with 431 in the
error envelope and the connection closed, before the app, the token check or the body limits come into play.
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from model.errors import DealscoreError, Problem
from service.errors import error_body
from service.logs import LOGGER_NAME
from service.middleware import new_request_id

__all__ = ["BoundedHeadProtocol", "HeadersTooLarge", "MAX_HEAD_BYTES"]

# A head (request line and every header) larger than this is refused. Browsers' and CRMs' heads are a few KB;
# proxies refuse far less (nginx: 4 x 8 KB by default). Counted per read, so a head that arrives whole in one read
# (at most 256 KB) may exceed it by that read: a bound on memory, not an exact size.
MAX_HEAD_BYTES = 64 * 1024
# After a refusal the rest of what the client sends is read and dropped for at most this long, then the connection
# is closed: closed at once, with unread bytes, the kernel resets it and the client loses the answer.
LINGER_SECONDS = 2.0
log = logging.getLogger(LOGGER_NAME)


class HeadersTooLarge(DealscoreError):
    status = 431
    code = "headers_too_large"


class BoundedHeadProtocol(HttpToolsProtocol):
    """HttpToolsProtocol refusing a request whose head grows beyond MAX_HEAD_BYTES before it is complete."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_bytes = 0  # bytes read since the current request's head began
        self.reading_head = True  # until the current head is complete (again after each request's end)
        self.refused = False  # answered 431: what still comes is dropped unread

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.reading_head:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.reading_head and self.head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._refuse_head()

    def on_headers_complete(self) -> None:
        self.reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_head, self.head_bytes = True, 0  # the next request's head, if the connection is kept

    def _refuse_head(self) -> None:
        request_id = new_request_id()
        error = HeadersTooLarge(f"request head too large: at most {MAX_HEAD_BYTES:,} bytes of request line and "
                                "headers are read", [Problem("headers", f"at most {MAX_HEAD_BYTES} bytes",
                                                             f"more than {MAX_HEAD_BYTES:,} bytes")])
        body = error_body(error, request_id)
        self.transport.write(b"".join([
            STATUS_LINE[error.status], b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body), b"x-request-id: " + request_id.encode() + b"\r\n",
            b"connection: close\r\n\r\n", body]))
        self.refused = True
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the answer, then the end: the client's own end then closes the transport
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
        log.warning("request refused", extra={"request_id": request_id, "status": error.status,
                                              "reason": "request head too large", "head_bytes": self.head_bytes})
