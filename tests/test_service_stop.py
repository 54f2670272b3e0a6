"""Stopping the server: a new connection is answered by a worker or refused; none is held in a backlog no process
accepts, to be reset when the last process exits (service/supervisor.py)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from model.artifact import save_artifact
from training.fit import TrainingResult

REPO = Path(__file__).resolve().parents[1]
HELD_SECONDS = 0.05


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ask(port: int) -> str:
    """'refused', 'answered' (an HTTP status line came back), 'closed' (no answer), 'garbled' or 'reset'."""
    try:
        connection = socket.create_connection(("127.0.0.1", port), timeout=10)
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:  # the listening socket closed during the handshake: a reset at once, nothing read
        return "reset"
    try:
        connection.sendall(b"GET /health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        head = connection.recv(64)
        return "answered" if head.startswith(b"HTTP/1.1 ") else "closed" if not head else "garbled"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    finally:
        connection.close()


def _two_workers(home: Path, port: int, stderr: int) -> subprocess.Popen[bytes]:
    """`dealscore serve` with 2 workers and no model: they start at once and stay not ready; /health/live answers
    all the same."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("DEALSCORE_")}
    env.update(DEALSCORE_HOME=str(home), DEALSCORE_PORT=str(port), DEALSCORE_WORKERS="2",
               DEALSCORE_LOG_LEVEL="WARNING", PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", "from service.main import main; main()"], env=env, cwd=home,
                            stdout=subprocess.DEVNULL, stderr=stderr)


def test_sigterm_to_the_parent_of_two_workers_resets_no_connection(tmp_path: Path) -> None:
    """A connection made while the workers shut down was completed by the kernel into the parent's socket, never
    accepted, and reset when the parent exited: a request sent and then reset, where it should be refused (a stop
    audit: all 8 connections of a load in that window)."""
    port = _free_port()
    server = _two_workers(tmp_path, port, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _ask(port) != "answered":
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        time.sleep(1.0)  # the second worker too
        server.send_signal(signal.SIGTERM)
        held: list[tuple[str, float]] = []  # connections completed, then neither answered nor ended at once
        fates: dict[str, int] = {}
        while server.poll() is None:
            started = time.monotonic()
            fate = _ask(port)
            fates[fate] = fates.get(fate, 0) + 1
            if fate not in ("answered", "refused") and time.monotonic() - started > HELD_SECONDS:
                held.append((fate, round(time.monotonic() - started, 3)))
            time.sleep(0.002)
        server.wait(30)
    finally:
        if server.poll() is None:
            server.kill()
        _, stderr = server.communicate(timeout=30)
    # A connection the kernel completed in the very instant the last worker closed the socket is reset at once, with
    # one worker too (no request read, nothing scored); uvicorn's parent held them until it exited (0.13 s here).
    assert held == [], (held, fates, stderr.decode()[-2000:])
    assert fates.get("refused", 0) > 0, fates  # new connections were refused while the workers shut down


def _workers(pid: int) -> list[int]:
    """The worker processes among `pid`'s children (multiprocessing's spawned ones; not its resource tracker)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"spawn_main" in command:
                found.append(int(child))
    return found


def _kill_parent(server: subprocess.Popen[bytes], workers: list[int], seconds: float = 30) -> list[int]:
    """SIGKILL the parent; the workers still alive `seconds` later."""
    server.kill()
    server.wait(30)
    deadline = time.monotonic() + seconds
    while any(_alive(worker) for worker in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [worker for worker in workers if _alive(worker)]


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has exited; only its parent's wait is missing


def test_the_workers_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    """A parent killed with SIGKILL left its two workers serving the old code and model, holding the port: the
    next `dealscore serve` was refused (a stop audit). Each worker now asks the kernel for SIGTERM when its parent
    dies (service/supervisor.py end_with_parent), and stops gracefully."""
    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs Linux's /proc to find the workers")
    port = _free_port()
    server = _two_workers(tmp_path, port, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while _ask(port) != "answered" or len(workers) < 2:
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            workers = [worker for worker in _workers(server.pid) if _alive(worker)]
            time.sleep(0.1)
        time.sleep(1.0)  # both workers serving
        left = _kill_parent(server, workers)
        assert not left, f"workers still running after their parent was killed: {left}"
        assert _ask(port) == "refused"
    finally:
        for worker in workers:
            if _alive(worker):
                os.kill(worker, signal.SIGKILL)


def _one_worker(home: Path, port: int) -> subprocess.Popen[bytes]:
    """`dealscore serve` with one worker and no model: it starts at once, and /v1/outcomes reads a body all the same."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("DEALSCORE_")}
    env.update(DEALSCORE_HOME=str(home), DEALSCORE_PORT=str(port), DEALSCORE_LOG_LEVEL="WARNING",
               PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", "from service.main import main; main()"], env=env, cwd=home,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _answer(connection: socket.socket) -> tuple[str, dict[str, str], bytes]:
    """The status line, headers and body of what came back before the connection ended."""
    received = b""
    connection.settimeout(20)
    with contextlib.suppress(ConnectionResetError):
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n") if head else [""]
    return status, {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}, body


@pytest.mark.parametrize("signals", [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGINT)],
                         ids=["ctrl-c twice", "sigterm then ctrl-c"])
def test_requests_a_forced_quit_cuts_off_are_answered_503_in_the_envelope(
        signals: tuple[signal.Signals, signal.Signals], tmp_path: Path) -> None:
    """A second Ctrl-C (uvicorn's forced quit) answered the requests still running with uvicorn's plain-text 500, no
    envelope and no request id; after a SIGTERM, with no answer at all (uvicorn raised the SIGTERM again, and it ended
    the process first). A CRM reads a 503 with Retry-After as "retry", a 500 as the request's failure."""
    port = _free_port()
    server = _one_worker(tmp_path, port)
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 120
        while _ask(port) != "answered":
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        body = b'{"outcomes": [{"deal_id": "D1", "status": "won"}]}'
        for _ in range(2):  # in flight: the head and half the body sent, the rest never
            connection = socket.create_connection(("127.0.0.1", port), timeout=10)
            connection.sendall(b"POST /v1/outcomes HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                               b"x-request-id: cut-%d\r\ncontent-length: %d\r\n\r\n" % (len(held), len(body))
                               + body[:20])
            held.append(connection)
        time.sleep(0.5)
        for signum in signals:
            server.send_signal(signum)
            time.sleep(0.3)
        answers = [_answer(connection) for connection in held]
        server.wait(30)
    finally:
        for connection in held:
            connection.close()
        if server.poll() is None:
            server.kill()
        _, stderr = server.communicate(timeout=30)
    for i, (status, headers, answer) in enumerate(answers):
        assert status == "HTTP/1.1 503 Service Unavailable", (status, answer, stderr.decode()[-2000:])
        assert (headers["content-type"], headers["retry-after"], headers["x-request-id"]) == (
            "application/json", "5", f"cut-{i}")
        error = json.loads(answer)
        assert (error["error"]["code"], error["request_id"]) == ("stopping", f"cut-{i}")
        assert error["error"]["details"] == [{"field": "service", "expected": "running until the request is answered",
                                              "got": "stopped"}]


SERVER_LOG = "server.log"


def _served(tmp_path: Path, model_dir: Path, drain_seconds: float, workers: int = 1,
            python_path: str = str(REPO)) -> tuple[subprocess.Popen[bytes], int]:
    """`dealscore serve` on `model_dir` with DEALSCORE_DRAIN_SECONDS, in a process group of its own, once it answers
    ready (with several workers, once each has: the kernel hands connections out in turn)."""
    port = _free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("DEALSCORE_")}
    env.update(DEALSCORE_HOME=str(tmp_path / "home"), DEALSCORE_PORT=str(port), DEALSCORE_MODEL_DIR=str(model_dir),
               DEALSCORE_DRAIN_SECONDS=str(drain_seconds), DEALSCORE_LOG_LEVEL="INFO", DEALSCORE_WORKERS=str(workers),
               PYTHONPATH=python_path)
    # The log goes to a file: a pipe nobody reads until the end filled up (about 260 request lines) and blocked the
    # server's writes of its log, so a test that polls for long stalled the server it watched.
    with (tmp_path / SERVER_LOG).open("wb") as log:
        server = subprocess.Popen([sys.executable, "-c", "from service.main import main; main()"], env=env,
                                  cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 120
    ready = 0
    while ready < 4 * workers:
        assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
        ready = ready + 1 if _request(port, "GET", "/health/ready")[0] == 200 else 0
        time.sleep(0.05 if ready else 0.2)
    return server, port


def _request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    """Status and JSON answer; (0, {}) when nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body, {"content-type": "application/json"} if body else {})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    except OSError:
        return 0, {}
    finally:
        connection.close()


def test_a_sigterm_with_a_drain_keeps_serving_while_readiness_says_stopping(trained: TrainingResult,
                                                                             tmp_path: Path) -> None:
    """Readiness answered 200 until the listener closed, about 40 ms after the signal: a load balancer that had not
    polled since sent requests that were refused. With DEALSCORE_DRAIN_SECONDS the service goes on answering while
    /health/ready says 503 `stopping`, then stops gracefully, ending as the SIGTERM asked."""
    DRAIN = 6  # seconds: the checks below take well under 1 s after the first, on a loaded machine too
    server, port = _served(tmp_path, save_artifact(trained.model, tmp_path / "model", trained.metadata), DRAIN)
    try:
        server.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(1.0)
        status, answer = _request(port, "GET", "/health/ready")
        assert (status, answer["error"]["code"]) == (503, "stopping"), answer
        assert answer["error"]["details"][0]["got"].startswith("draining, stopping in ")
        scored = _request(port, "POST", "/v1/score", b'{"deals": [{"deal_id": "D1", "created_at": "2025-06-01"}]}')
        assert scored[0] == 200 and len(scored[1]["scores"]) == 1
        assert _request(port, "GET", "/health/live")[0] == 200
        assert time.monotonic() - signalled < DRAIN, "the checks above ran after the drain: rerun on a quieter machine"
        server.wait(60)
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate(timeout=30)
    stderr = (tmp_path / SERVER_LOG).read_bytes()
    assert time.monotonic() - signalled >= DRAIN  # it stopped only once the drain was over
    assert server.returncode == -signal.SIGTERM, stderr.decode()[-2000:]
    assert b"draining for %d s" % DRAIN in stderr and b"drained for %d s" % DRAIN in stderr


def test_a_ctrl_c_ends_the_drain_at_once(trained: TrainingResult, tmp_path: Path) -> None:
    server, port = _served(tmp_path, save_artifact(trained.model, tmp_path / "model", trained.metadata), 300)
    try:
        server.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _request(port, "GET", "/health/ready")[0] != 503:
            assert time.monotonic() < deadline, "the drain did not begin"
            time.sleep(0.1)
        server.send_signal(signal.SIGINT)
        server.wait(60)  # not the 300 s of the drain
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate(timeout=30)
    assert _request(port, "GET", "/health/live")[0] == 0  # stopped: nothing listens


def test_a_sigterm_while_the_model_still_loads_stops_at_once_drain_or_not(trained: TrainingResult,
                                                                           tmp_path: Path) -> None:
    """The server starts, and answers /health/ready 503 `not_ready`, while the model still loads: a SIGTERM then
    waited the whole drain (30 s of 30), though no balancer had ever been told the instance was ready (a review)."""
    model_dir = save_artifact(trained.model, tmp_path / "model", trained.metadata)
    port = _free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("DEALSCORE_")}
    env.update(DEALSCORE_HOME=str(tmp_path / "home"), DEALSCORE_PORT=str(port), DEALSCORE_MODEL_DIR=str(model_dir),
               DEALSCORE_DRAIN_SECONDS="300", PYTHONPATH=str(REPO))
    slow_load = ("import time\nfrom service.holder import ModelHolder\nload = ModelHolder.load\n"
                 "ModelHolder.load = lambda self, directory: (time.sleep(60), load(self, directory))[1]\n"
                 "from service.main import main\nmain()\n")
    server = subprocess.Popen([sys.executable, "-c", slow_load], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _request(port, "GET", "/health/live")[0] != 200:
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        assert _request(port, "GET", "/health/ready")[1]["error"]["code"] == "not_ready"
        server.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(20)  # not the 300 s of the drain, nor the 60 s of the load
    finally:
        if server.poll() is None:
            server.kill()
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == -signal.SIGTERM, stderr.decode()[-2000:]
    assert b"draining" not in stderr


def _stop(server: subprocess.Popen[bytes], tmp_path: Path) -> bytes:
    """Kill what is left of a `_served` server; its log."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGKILL)
    server.communicate(timeout=30)
    return (tmp_path / SERVER_LOG).read_bytes()


def test_a_sigterm_to_the_whole_group_of_two_workers_drains_once(trained: TrainingResult, tmp_path: Path) -> None:
    """systemd's default KillMode (and kill -- -PGID) sends the SIGTERM to every process: each worker got its own,
    then its parent's, a second SIGTERM, which ended the drain (4 s) within 0.3 s (a review)."""
    server, port = _served(tmp_path, save_artifact(trained.model, tmp_path / "model", trained.metadata), 4, workers=2)
    try:
        os.killpg(server.pid, signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(1.5)
        answers = [_request(port, "GET", "/health/ready") for _ in range(4)]
        assert [(status, answer.get("error", {}).get("code")) for status, answer in answers] == [(503, "stopping")] * 4
        assert _request(port, "POST", "/v1/score", b'{"deals": [{"deal_id": "D1"}]}')[0] == 200
        assert time.monotonic() - signalled < 4, "the checks above ran after the drain: rerun on a quieter machine"
        server.wait(60)
    finally:
        stderr = _stop(server, tmp_path)
    assert time.monotonic() - signalled >= 4, stderr.decode()[-2000:]


@pytest.mark.parametrize("signals", [(signal.SIGTERM, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT),
                                     (signal.SIGINT,)], ids=["term-term", "term-int", "int"])
def test_the_parent_of_two_workers_ends_their_drain_as_one_worker_would(
        trained: TrainingResult, tmp_path: Path, signals: tuple[int, ...]) -> None:
    """A second SIGTERM or a Ctrl-C to the parent during the drain was queued and never read: the workers drained
    on (300 s); and a Ctrl-C to the parent alone began the drain it ends with one worker (a review)."""
    _stopped_at_once(trained, tmp_path, signals, 1.5)


def _stopped_at_once(trained: TrainingResult, tmp_path: Path, signals: tuple[int, ...], gap: float) -> None:
    """Two workers draining for 300 s: `signals` sent to the parent `gap` seconds apart stop it within 20 s, exit 0."""
    server, port = _served(tmp_path, save_artifact(trained.model, tmp_path / "model", trained.metadata), 300,
                           workers=2)
    try:
        for sig in signals:
            server.send_signal(sig)
            time.sleep(gap)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(20)
    finally:
        stderr = _stop(server, tmp_path)
    assert server.returncode == 0, stderr.decode()[-2000:]
    assert _request(port, "GET", "/health/live")[0] == 0


def test_a_worker_restarted_on_sighup_does_not_drain(trained: TrainingResult, tmp_path: Path) -> None:
    """uvicorn's restart on SIGHUP retires each old worker while the others serve: with a drain, the old one answered
    /health/ready 503 `stopping` on the shared port (one poll in two or three) and held the restart for the drain.
    The new workers here take 6 s to start, as on a busy machine: uvicorn's 5 s wait aborted the restart ("not ready
    in time; keeping worker"), the old workers serving on (service.main.WORKER_START_SECONDS)."""
    slow = tmp_path / "slow-start"
    slow.mkdir()
    flag = tmp_path / "start-slowly"
    # Every Python process started while the flag exists (the restart's new workers) takes 6 s more to start.
    (slow / "sitecustomize.py").write_text(f"import os, time\nif os.path.exists({str(flag)!r}):\n    time.sleep(6)\n")
    server, port = _served(tmp_path, save_artifact(trained.model, tmp_path / "model", trained.metadata), 300,
                           workers=2, python_path=f"{slow}{os.pathsep}{REPO}")
    try:
        before = set(_workers(server.pid))
        flag.touch()
        server.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        codes = set()
        while before & set(_workers(server.pid)):
            assert time.monotonic() < deadline, "the old workers did not stop"
            status, answer = _request(port, "GET", "/health/ready")
            codes.add(answer.get("error", {}).get("code", status))
            time.sleep(0.05)
        assert "stopping" not in codes
    finally:
        server.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(30)
        _stop(server, tmp_path)


def test_workers_whose_parent_is_killed_during_the_drain_stop_at_once(trained: TrainingResult,
                                                                      tmp_path: Path) -> None:
    """A parent killed with SIGKILL during the drain: each worker's end_with_parent SIGTERM, its second, ended the
    drain; once a worker of several ignored a repeated SIGTERM (its parent's relay of a group SIGTERM), the orphans
    drained on (300 s), holding the port, and ignored any further SIGTERM (a review)."""
    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs Linux's /proc to find the workers")
    server, port = _served(tmp_path, save_artifact(trained.model, tmp_path / "model", trained.metadata), 300,
                           workers=2)
    workers = [worker for worker in _workers(server.pid) if _alive(worker)]
    try:
        assert len(workers) == 2
        server.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _request(port, "GET", "/health/ready")[0] != 503:
            assert time.monotonic() < deadline, "the drain did not begin"
            time.sleep(0.1)
        left = _kill_parent(server, workers)
        assert not left, f"workers still draining after their parent was killed: {left}"
        assert _request(port, "GET", "/health/live")[0] == 0
    finally:
        for worker in workers:
            if _alive(worker):
                os.kill(worker, signal.SIGKILL)
        _stop(server, tmp_path)


def test_two_sigterms_to_the_parent_in_quick_succession_end_the_drain(trained: TrainingResult,
                                                                       tmp_path: Path) -> None:
    """uvicorn's parent reads its signals every 0.5 s, all at once: a second SIGTERM that came before it had read the
    first was one more `handle_term`, and the workers drained the whole drain (300 s), where one worker stops at once
    (a review)."""
    _stopped_at_once(trained, tmp_path, (signal.SIGTERM, signal.SIGTERM), 0.02)  # apart, or the kernel merges them


def test_a_workers_server_is_made_once_when_the_ping_thread_asks_for_it_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn's ping thread and the worker's main thread both ask for the worker's server at its start (when the
    parent pinged it while it started, as a SIGHUP's restart does). Each made one, and when the ping thread's was
    kept, the worker answered "not started" for good: the restart was aborted (a run in a few of the SIGHUP test).
    Making a ServiceServer reads the settings, which is what widened the window; here it takes 50 ms."""
    import threading

    import uvicorn

    import service.supervisor as supervisor

    made: list[object] = []
    real_init = supervisor.ServiceServer.__init__

    def slow_init(self: Any, *args: Any, **kwargs: Any) -> None:
        time.sleep(0.05)
        made.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(supervisor.ServiceServer, "__init__", slow_init)
    worker = supervisor.WorkerProcess.__new__(supervisor.WorkerProcess)  # no process: only its server is asked for
    worker.config = uvicorn.Config("service.app:create_app_from_env", factory=True)
    worker._server = None
    seen: list[object] = []
    threads = [threading.Thread(target=lambda: seen.append(worker.server)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and seen[0] is seen[1]
