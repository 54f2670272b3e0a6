"""A process that exits without stopping its feedback store (uvicorn's forced quit, a second Ctrl-C, skips the
lifespan shutdown) still writes the score log it holds in memory: it is what the service answered."""

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

import sqlalchemy as sa

from model.artifact import save_artifact
from training.fit import TrainingResult

REPO = Path(__file__).resolve().parents[1]

_EXIT_WITHOUT_STOP = """
import sys
from pathlib import Path
from types import SimpleNamespace
from service.feedback.config import FeedbackConfig
from service.feedback.store import Feedback

url, spool = sys.argv[1], Path(sys.argv[2])
# The writer gathers for 30 s: the entry is in memory only when the process ends.
feedback = Feedback(FeedbackConfig(database_url=url, spool_dir=spool, flush_seconds=30.0,
                                   outcomes_refresh_seconds=0))
feedback.start()
scores = SimpleNamespace(p_win=[0.5, 0.25], value=[10.0, 20.0], expected_value=[5.0, 5.0], grade=["B", "C"])
feedback.record_scores("answered-1", "v1", [{"deal_id": "D1"}, {"deal_id": "D2"}], scores)
print("recorded", flush=True)
"""


def test_the_score_log_in_memory_is_written_when_the_process_exits_without_a_stop(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    done = subprocess.run([sys.executable, "-c", _EXIT_WITHOUT_STOP, url, str(tmp_path / "spool")], cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout == "recorded\n", done.stderr[-2000:]
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            logged = connection.execute(sa.text("SELECT request_id, deal_id FROM score_log ORDER BY deal_id")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in logged] == [("answered-1", "D1"), ("answered-1", "D2")]
    assert not list((tmp_path / "spool").glob("*.jsonl"))  # written to the database, nothing left to replay


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _post(port: int, path: str, body: bytes) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, body, {"content-type": "application/json"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_score_log_in_memory_is_written_when_a_forced_quit_follows_a_sigterm(
        trained: TrainingResult, tmp_path: Path) -> None:
    """SIGTERM (docker stop, systemd) and then Ctrl-C while the graceful stop waits: uvicorn skips the lifespan
    shutdown and raises the SIGTERM again, which ended the process before atexit wrote the score log (a stop audit:
    20 scores answered, 0 logged). Now the server writes it before it raises the signal."""
    model_dir = save_artifact(trained.model, tmp_path / "model", trained.metadata)
    port = _free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith("DEALSCORE_")}
    env.update(DEALSCORE_HOME=str(tmp_path / "home"), DEALSCORE_PORT=str(port), DEALSCORE_MODEL_DIR=str(model_dir),
               DEALSCORE_SCORE_LOG_FLUSH_SECONDS="30", DEALSCORE_LOG_LEVEL="WARNING", PYTHONPATH=str(REPO))
    server = subprocess.Popen([sys.executable, "-c", "from service.main import main; main()"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    held = None
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            with contextlib.suppress(OSError), contextlib.closing(probe):
                probe.request("GET", "/health/ready")
                if probe.getresponse().status == 200:
                    break
            time.sleep(0.2)
        deals = [{"deal_id": f"D{i}", "created_at": "2025-06-01", "amount": 1000 * i} for i in range(1, 4)]
        assert [_post(port, "/v1/score", json.dumps({"deals": [deal]}).encode()) for deal in deals] == [200] * 3
        # A request in flight (half its body sent) keeps the graceful stop waiting, so the Ctrl-C forces the quit.
        held = socket.create_connection(("127.0.0.1", port), timeout=10)
        held.sendall(b"POST /v1/score HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: 100\r\n\r\n{\"deals\"")
        time.sleep(0.3)
        server.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        server.send_signal(signal.SIGINT)
        server.wait(60)
    finally:
        if held is not None:
            held.close()
        if server.poll() is None:
            server.kill()
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == -signal.SIGTERM, stderr.decode()[-2000:]  # it still ends as the signal asked
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'home' / 'feedback.db'}")
    try:
        with engine.connect() as connection:
            logged = connection.execute(sa.text("SELECT deal_id FROM score_log ORDER BY deal_id")).scalars().all()
    finally:
        engine.dispose()
    assert logged == ["D1", "D2", "D3"], stderr.decode()[-2000:]
