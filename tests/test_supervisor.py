"""A worker of several stops when its parent dies (service/supervisor.py end_with_parent), also when the parent
died before the worker asked the kernel for it: a worker spends seconds importing before its app is built."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

_WORKER = '''
import os
import sys
import time
import multiprocessing


def work(pid_file):
    with open(pid_file + ".tmp", "w") as out:
        out.write(str(os.getpid()))
    os.replace(pid_file + ".tmp", pid_file)
    parent = multiprocessing.parent_process().pid
    while os.getppid() == parent:  # the parent is killed while this worker still "imports"
        time.sleep(0.02)
    from service.supervisor import end_with_parent

    end_with_parent()
    time.sleep(60)


if __name__ == "__main__":
    multiprocessing.get_context("spawn").Process(target=work, args=(sys.argv[1],)).start()
    time.sleep(120)
'''


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_a_worker_whose_parent_died_before_it_asked_to_end_with_it_stops(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    script = tmp_path / "spawner.py"
    script.write_text(_WORKER)
    pid_file = tmp_path / "worker.pid"
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file)], cwd=tmp_path,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)])})
    worker = 0
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists():
            assert parent.poll() is None and time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.05)
        worker = int(pid_file.read_text())
        parent.kill()
        parent.wait(30)
        deadline = time.monotonic() + 15
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker kept running after its parent was killed"
    finally:
        if parent.poll() is None:
            parent.kill()
        if worker and _alive(worker):
            os.kill(worker, signal.SIGKILL)
