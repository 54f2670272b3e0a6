"""A process that exits without stopping its feedback store (uvicorn's forced quit, a second Ctrl-C, skips the
lifespan shutdown) still writes the score log it holds in memory: it is what the service answered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

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
