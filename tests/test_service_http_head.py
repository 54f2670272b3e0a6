"""The request head as the server reads it (service.http_protocol): bounded in size, before the app runs. uvicorn's
httptools protocol read one header of 100 MB, or 30 MB of small ones (the worker grew by 554 MB), and answered 200."""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

import pytest
from service_fixtures import uvicorn_server

from service.settings import Settings


def _server_options(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The uvicorn options `serve()` (dealscore serve, the image's python -m service.main) runs the server with."""
    from service import main

    captured: dict[str, Any] = {}
    monkeypatch.setattr(main, "run_uvicorn", captured.update)
    monkeypatch.setattr(main, "configure_logging", lambda _level: None)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # serve() hands its settings to the workers through it
    main.serve(Settings())
    # Where and how many: the test's own; the rest is the server's.
    return {name: value for name, value in captured.items()
            if name not in ("factory", "host", "port", "workers", "log_config", "log_level")}


async def _echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers 200 with the size of the body it read."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    size, more = 0, True
    while more:
        message = await receive()
        size, more = size + len(message.get("body", b"")), message.get("more_body", False)
    body = json.dumps({"body_bytes": size}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _exchange(port: int, *requests: bytes) -> bytes:
    """Send `requests` on one connection (their bytes in one go) and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(b"".join(requests))
        received = b""
        while chunk := connection.recv(1 << 16):
            received += chunk
    return received


def _get(headers: bytes = b"", close: bool = False) -> bytes:
    return (b"GET /x HTTP/1.1\r\nHost: t\r\n" + headers + (b"Connection: close\r\n" if close else b"") + b"\r\n")


@pytest.mark.parametrize("headers", [b"X-Big: " + b"a" * (1 << 20) + b"\r\n", b"X: y\r\n" * 200_000],
                         ids=["one header of 1 MB", "200,000 small headers"])
def test_a_request_head_beyond_the_limit_is_refused_431_in_the_envelope(
        monkeypatch: pytest.MonkeyPatch, headers: bytes) -> None:
    with uvicorn_server(_echo, **_server_options(monkeypatch)) as port:
        answer = _exchange(port, _get(headers))
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431 "), head[:100]
        refusal = json.loads(body)
        assert refusal["error"]["code"] == "headers_too_large"
        assert f"x-request-id: {refusal['request_id']}".encode() in head.lower()
        # Heads under the limit are served as before, a large body beside a small head too, on one connection.
        served = _exchange(port, _get(b"X-Ok: " + b"a" * 30_000 + b"\r\n"),
                           b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n" + b"b" * 1_000_000,
                           _get(close=True))
        assert served.count(b"HTTP/1.1 200 OK") == 3, served[:300]
        assert b'{"body_bytes": 1000000}' in served


async def _slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """_echo, answering only after 1 s: longer than the head timeout the test sets."""
    import asyncio

    if scope["type"] == "http":
        await asyncio.sleep(1.0)
    await _echo(scope, receive, send)


def test_a_request_head_that_does_not_arrive_in_time_is_answered_408_and_closed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from service import http_protocol

    options = _server_options(monkeypatch)
    monkeypatch.setattr(http_protocol, "HEAD_TIMEOUT_SECONDS", 0.5, raising=False)
    with uvicorn_server(_slow, **options) as port:
        for sent in (b"POST /v1/score HTTP/1.1\r\nHost: t\r\n", b""):  # part of a head; nothing at all
            with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
                connection.sendall(sent)
                answer = b""
                while chunk := connection.recv(1 << 16):  # until the server closes it (10 s: the test fails)
                    answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408 "), (sent, answer[:200])
            assert json.loads(body)["error"]["code"] == "request_timeout"
        # A request the app takes longer than the head timeout to answer is not cut, nor the one after it.
        served = _exchange(port, _get(), _get(close=True))
        assert served.count(b"HTTP/1.1 200 OK") == 2, served[:300]


async def _early(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """_echo, but /early answers at once without reading the body (as the token check's 401 does)."""
    if scope["type"] == "http" and scope["path"] in ("/early", "/early-saying-close"):
        says = [(b"connection", b"close")] if scope["path"] == "/early-saying-close" else []
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2"), *says]})
        await send({"type": "http.response.body", "body": b"{}"})
        return
    await _echo(scope, receive, send)


@pytest.mark.parametrize("trickle", [False, True], ids=["the rest and a next head at once", "a byte at a time"])
def test_a_request_answered_before_its_body_came_ends_its_connection(
        monkeypatch: pytest.MonkeyPatch, trickle: bool) -> None:
    """The app answered before the body came (as the token check's 401 does). uvicorn read the rest with no
    deadline, its first byte having cancelled the keep-alive timer: a body sent a byte every 4 s held the connection
    for good, and so did the body's rest with part of a next head (a review). Now what comes after such an answer
    is dropped and the connection ended; the answer itself arrives whole."""
    from service import http_protocol

    options = _server_options(monkeypatch)
    monkeypatch.setattr(http_protocol, "LINGER_SECONDS", 0.5, raising=False)
    with uvicorn_server(_early, **options) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(b"POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n0123456789")
            received = b""
            while b"{}" not in received:
                received += connection.recv(1 << 16)
            assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"{}"), received[:200]
            # Said in the answer: a client's pool that is not told keeps the connection and sends its next request
            # into it (a CRM client's next POST after a 413 failed with 'server disconnected' in 3 of 10 tries).
            assert b"\r\nconnection: close\r\n" in received.lower(), received[:200]
            started = time.monotonic()
            try:
                if trickle:
                    for _ in range(40):  # 12 s of a byte every 0.3 s, unless the server ends it first
                        connection.sendall(b"x")
                        time.sleep(0.3)
                else:
                    connection.sendall(b"0123456789" * 199 + b"GET /x HTTP/1.1\r\nHost: t\r\n")
            except OSError:  # the server closed it while the body was still coming
                pass
            rest = b""
            try:
                while chunk := connection.recv(1 << 16):  # until the server ends it (10 s: the test fails)
                    rest += chunk
            except ConnectionResetError:  # ended while unread bytes were still arriving
                pass
        assert rest == b"", rest[:200]  # no answer to a head that came after it
        assert time.monotonic() - started < 5, "the connection was kept"


def test_an_early_answer_that_says_close_already_says_it_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The protocol adds `connection: close` to an answer given before its body came; one that said so already
    (uvicorn's own 500) carried the header twice (a review)."""
    from service import http_protocol

    monkeypatch.setattr(http_protocol, "LINGER_SECONDS", 0.2, raising=False)
    with uvicorn_server(_early, **_server_options(monkeypatch)) as port:
        received = _exchange(port, b"POST /early-saying-close HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234")
    head = received.split(b"\r\n\r\n")[0].lower()
    assert received.startswith(b"HTTP/1.1 200 ") and head.count(b"\r\nconnection: close") == 1, head


def test_a_head_too_large_behind_a_request_still_answered_is_refused_after_that_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Pipelined behind a request the app takes 1 s to answer, a head of 1 MB was answered 431 at once: the client
    read it as the first request's answer, and that request's own answer then failed in the app (write after
    write_eof, an error in the log)."""
    with uvicorn_server(_slow, **_server_options(monkeypatch)) as port:
        answer = _exchange(port, _get(), _get(b"X-Big: " + b"a" * (1 << 20) + b"\r\n"))
    first, _, rest = answer.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 "), answer[:300]
    assert rest.startswith(b'{"body_bytes": 0}HTTP/1.1 431 '), rest[:300]


def test_a_next_head_left_incomplete_on_a_kept_alive_connection_is_answered_408(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline is armed when a read leaves a head incomplete: here the second request's, after the first was
    answered on the same connection (uvicorn's keep-alive timer had been cancelled by that head's first bytes)."""
    from service import http_protocol

    options = _server_options(monkeypatch)
    monkeypatch.setattr(http_protocol, "HEAD_TIMEOUT_SECONDS", 0.5, raising=False)
    with uvicorn_server(_echo, **options) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(_get())
            answer = b""
            while b"body_bytes" not in answer:
                answer += connection.recv(1 << 16)
            connection.sendall(b"GET /x HTTP/1.1\r\nHo")
            rest = b""
            while chunk := connection.recv(1 << 16):  # until the server closes it (10 s: the test fails)
                rest += chunk
    assert rest.startswith(b"HTTP/1.1 408 "), rest[:200]
