"""The HTTP protocol the server runs: uvicorn's httptools one, with a bound on the size of a request's head and on
the time it may take to arrive.

uvicorn reads a request's head (its request line and headers) before the app sees anything, and with httptools it
set no bound on it: a security review sent one header of 100 MB (answered 200 after 21 s, 13.6 s of the worker's
CPU, its event loop blocked meanwhile) and 30 MB of 6-byte headers (the worker grew from 508 MB to 1,062 MB), on an
open route, with no token, whatever the settings. Beyond MAX_HEAD_BYTES the head is refused here with 431 in the
error envelope and the connection closed, before the app, the token check or the body limits come into play.

Nor did uvicorn time a head out: a connection that sent part of one, or nothing, was kept for good (a review held
2,000 for minutes with a byte every 5 s, each an open file of the worker, whose limit then stops it accepting any
connection). A head not complete HEAD_TIMEOUT_SECONDS after the connection opened, or after its first byte on a
kept-alive connection, is answered 408 and the connection closed.
"""

from __future__ import annotations

import logging
from asyncio import TimerHandle
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from model.errors import DealscoreError, Problem
from service.errors import RequestTimeout, error_body
from service.logs import LOGGER_NAME
from service.middleware import new_request_id

__all__ = ["BoundedHeadProtocol", "HEAD_TIMEOUT_SECONDS", "HeadersTooLarge", "MAX_HEAD_BYTES"]

# A head (request line and every header) larger than this is refused. Browsers' and CRMs' heads are a few KB;
# proxies refuse far less (nginx: 4 x 8 KB by default). Counted per read, so a head that arrives whole in one read
# (at most 256 KB) may exceed it by that read: a bound on memory, not an exact size.
MAX_HEAD_BYTES = 64 * 1024
# After a refusal the rest of what the client sends is read and dropped for at most this long, then the connection
# is closed: closed at once, with unread bytes, the kernel resets it and the client loses the answer.
LINGER_SECONDS = 2.0
# A client sends its head in one go; a slow link takes a second or two. (Idle kept-alive connections are uvicorn's to
# close, after its keep-alive timeout of 5 s; a request body has DEALSCORE_BODY_TIMEOUT_SECONDS.)
HEAD_TIMEOUT_SECONDS = 10.0
log = logging.getLogger(LOGGER_NAME)


class HeadersTooLarge(DealscoreError):
    status = 431
    code = "headers_too_large"


class BoundedHeadProtocol(HttpToolsProtocol):
    """HttpToolsProtocol refusing a request whose head grows beyond MAX_HEAD_BYTES, or is not complete
    HEAD_TIMEOUT_SECONDS after it began."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_bytes = 0  # bytes read since the current request's head began
        self.reading_head = True  # until the current head is complete (again after each request's end)
        self.refused = False  # answered 431 or 408, or early (see on_response_complete): what still comes is dropped
        # A head too large behind a request the app still answers (pipelined): refused in its turn, after that answer
        # (written at once, it was read as the answer to the request before, whose own answer then failed).
        self.refusal_owed = False
        self.head_begun = False  # a head's first byte is parsed and its end is not: what the deadline times
        self.head_deadline: TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused or self.refusal_owed:
            return
        if self.reading_head:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.reading_head and self.head_bytes > MAX_HEAD_BYTES:
            if self._answer_owed():
                self.refusal_owed = True
                self.flow.pause_reading()
            else:
                self._refuse_head()
        elif self.head_begun and self.head_deadline is None:
            # A head left incomplete by this read, also one begun in the read that ended the request before it (a
            # review: no deadline was armed for such a head, maybe never). Timed only then: a head that arrives
            # whole, as nearly all do, costs no timer.
            self._arm_head_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_begun = True

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.refusal_owed and not self._answer_owed():
            self._refuse_head()
        elif self.cycle is not None and self.cycle.response_complete and (
                not self.reading_head or getattr(self.cycle, "close_announced", False)):
            # Answered before its body was all read (the token check's 401, a 413 on the Content-Length, a 503 while
            # overloaded): uvicorn went on reading the body with no deadline, and its first byte had cancelled the
            # keep-alive timer, so a body sent a byte every few seconds, or never finished, held the connection for
            # good (a review). The rest is dropped and the connection ended, as nginx ends one after such an answer.
            self._end_connection()

    def on_headers_complete(self) -> None:
        self.reading_head, self.head_begun = False, False
        self._disarm_head_deadline()
        super().on_headers_complete()
        self._announce_close_of_early_answers(self.cycle)

    def _announce_close_of_early_answers(self, cycle: Any) -> None:
        """An answer that starts before its request's body has all come says `connection: close`: the connection
        ends after it (on_response_complete), and a client that is not told so keeps it in its pool and sends its next
        request into a closed connection (a CRM client's next POST after a 413 on the Content-Length failed with
        'server disconnected' in 3 of 10 tries)."""
        send = cycle.send

        async def send_saying_close(message: Any) -> None:
            if message["type"] != "http.response.start" or not cycle.more_body:
                await send(message)
                return
            kept = cycle.keep_alive
            headers = list(message.get("headers", []))
            if not any(name.lower() == b"connection" and value.lower() == b"close" for name, value in headers):
                headers.append((b"connection", b"close"))  # said once (uvicorn's own 500 says it already)
            await send({**message, "headers": headers})
            # uvicorn takes the header as its own cue and would close at the answer's end, unread body bytes and all
            # (the kernel then resets the connection and the client may lose the answer): the close stays
            # _end_connection's, after the linger. A close uvicorn had decided itself (a stop) stays uvicorn's.
            cycle.keep_alive = kept
            cycle.close_announced = True

        cycle.send = send_saying_close

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_head, self.head_bytes = True, 0  # the next request's head, if the connection is kept

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self.head_deadline = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def _head_too_slow(self) -> None:
        self.head_deadline = None
        if self.transport.is_closing() or not self.reading_head or self.refused:
            return
        if self._answer_owed():
            self._arm_head_deadline()  # the app still answers the request before it: nothing to refuse yet
            return
        self._refuse(RequestTimeout(
            f"request head not received within {HEAD_TIMEOUT_SECONDS:g} s", [Problem(
                "headers", f"the whole request line and headers within {HEAD_TIMEOUT_SECONDS:g} s",
                f"{self.head_bytes:,} bytes by then")]), "request head too slow")

    def _end_connection(self) -> None:
        """After the last answer: drop what else comes, say the end, close once the client had time to read it."""
        self._disarm_head_deadline()
        self.refused = True
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the answer, then the end: the client's own end then closes the transport
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _answer_owed(self) -> bool:
        """The app still answers a request of this connection (the last one parsed: answers go out in order)."""
        return self.cycle is not None and not self.cycle.response_complete

    def _refuse_head(self) -> None:
        self._refuse(HeadersTooLarge(f"request head too large: at most {MAX_HEAD_BYTES:,} bytes of request line and "
                                     "headers are read", [Problem("headers", f"at most {MAX_HEAD_BYTES} bytes",
                                                                  f"more than {MAX_HEAD_BYTES:,} bytes")]),
                     "request head too large")

    def _refuse(self, error: DealscoreError, reason: str) -> None:
        """Answer `error` in the envelope, then drop what else comes and close the connection."""
        self._disarm_head_deadline()
        request_id = new_request_id()
        body = error_body(error, request_id)
        self.transport.write(b"".join([
            STATUS_LINE[error.status], b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body), b"x-request-id: " + request_id.encode() + b"\r\n",
            b"connection: close\r\n\r\n", body]))
        self._end_connection()
        log.warning("request refused", extra={"request_id": request_id, "status": error.status,
                                              "reason": reason, "head_bytes": self.head_bytes})
