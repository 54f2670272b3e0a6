"""How a command ends when it is told to stop: Ctrl-C and SIGTERM end it with one line on stderr and 130 or
143 (what shells report), after the same cleanup; a reader that stopped early (`| head`) ends it quietly
with 141, as it ends any Unix tool. And `dealscore serve` keeps stderr for its JSON log: its human lines go
to stdout, and uvicorn keeps its own SIGTERM handling."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from service_fixtures import (  # noqa: F401 (fixtures, registered by name)
    fixture_service_artifact,
    fixture_service_crm,
    fixture_service_dataset,
    fixture_service_training,
)

import service.main
from dealscore import cli, registry_commands
from model.registry import Registry
from training.synthetic_crm import generate, write

REPO = Path(__file__).resolve().parents[1]
SIGNALS = [pytest.param(signal.SIGTERM, 143, id="SIGTERM"), pytest.param(signal.SIGINT, 130, id="SIGINT")]


def interrupted_line(command: str, signum: int) -> str:
    return (f"dealscore {command}: interrupted by {signal.Signals(signum).name}; stopped before finishing, "
            "nothing half-written is left")


def _default_sigint() -> None:
    # A shell starting a job in the background without job control ignores SIGINT for it, and Python keeps
    # that: give the command the default a terminal gives it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def dealscore(argv: list[str], cwd: Path, **popen: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("DEALSCORE_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "dealscore", *argv], cwd=cwd, env=env, text=True,
                            preexec_fn=_default_sigint, **popen)


@pytest.fixture(scope="module")
def crm_20k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough deals that fitting them takes a few seconds: time to interrupt it."""
    return write(generate(seed=3, n_deals=20_000), tmp_path_factory.mktemp("crm") / "crm")[0].parent


# -- Ctrl-C and SIGTERM ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "status"), SIGNALS)
def test_a_signal_ends_training_with_one_line_and_no_artifact(signum: int, status: int, crm_20k: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "model"
    job = dealscore(["train", "--deals", str(crm_20k / "deals.csv"), "--clients", str(crm_20k / "clients.csv"),
                     "--holdings", str(crm_20k / "holdings.csv"), "--out", str(out)], tmp_path,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert job.stderr is not None
    progress = []
    for line in job.stderr:  # wait until the fit has started, then stop it
        progress.append(line)
        if "fitting" in line:
            break
    job.send_signal(signum)
    stdout, rest = job.communicate(timeout=30)
    stderr = "".join(progress) + rest
    assert job.returncode == status, stderr
    assert stderr.splitlines()[-1] == interrupted_line("train", signum)
    assert "Traceback" not in stderr and "unexpected failure" not in stderr
    assert stdout == ""  # no summary of a model that was not written
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no artifact, no staging folder beside it


@pytest.fixture()
def own_sigterm_handler() -> Iterator[list[int]]:
    """A SIGTERM handler of the test's own, so a SIGTERM the CLI does not handle fails the test, not pytest."""
    received: list[int] = []

    def record(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    before = signal.signal(signal.SIGTERM, record)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, before)


def test_sigterm_runs_the_commands_cleanup_as_ctrl_c_does(own_sigterm_handler: list[int],
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    steps: list[str] = []

    def long_job(args: argparse.Namespace) -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises in here
            steps.append("finished")
            return 0
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # a second SIGTERM does not break off the cleanup
            time.sleep(0.05)
            steps.append("cleaned up")

    monkeypatch.setattr(cli, "cmd_demo_data", long_job)
    before = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    code = cli.main(["demo-data", "--out", "unused"])
    assert (code, steps) == (143, ["cleaned up"])
    assert time.monotonic() - started < 4
    assert capsys.readouterr().err == interrupted_line("demo-data", signal.SIGTERM) + "\n"
    assert own_sigterm_handler == []  # the CLI's handler took both
    assert signal.getsignal(signal.SIGTERM) is before  # and is gone after main()


def test_ctrl_c_is_one_line_and_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_demo_data", interrupted)
    assert cli.main(["demo-data", "--out", "unused"]) == 130
    assert capsys.readouterr().err == interrupted_line("demo-data", signal.SIGINT) + "\n"


# -- a closed stdout ------------------------------------------------------------------------------------------


@pytest.fixture()
def registry(service_artifact: Path, tmp_path: Path) -> Path:
    Registry(tmp_path / "registry").add_artifact(service_artifact)
    return tmp_path / "registry"


def test_a_reader_that_is_gone_ends_the_command_quietly(registry: Path, tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head` that has had its lines
    try:
        job = dealscore(["models", "list", "--registry", str(registry)], tmp_path, stdout=write_end,
                        stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    _, stderr = job.communicate(timeout=30)
    assert (job.returncode, stderr) == (141, "")


# A command printing LINES lines, then ending with STATUS: thousands of lines are more than a pipe holds, as
# `dealscore models list` prints on a registry of thousands of versions.
PRINTING = """
import sys
from dealscore import cli, registry_commands

def listing(args):
    for version in range(int(sys.argv[1])):
        print(f"{version:>8} stored " + "x" * 60)
    return int(sys.argv[2])

registry_commands.cmd_models_list = listing
sys.exit(cli.main(["models", "list", "--registry", "unused"]))
"""


def printing(lines: int, status: int, tmp_path: Path, stdout: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PYTHONUNBUFFERED", None)  # stdout buffered, as a pipe's is by default
    return subprocess.Popen([sys.executable, "-c", PRINTING, str(lines), str(status)], cwd=tmp_path, env=env,
                            stdout=stdout, stderr=subprocess.PIPE, text=True)


def test_piping_into_head_stops_a_long_output_quietly(tmp_path: Path) -> None:
    job = printing(100_000, 0, tmp_path, subprocess.PIPE)
    head = subprocess.run(["head", "-2"], stdin=job.stdout, capture_output=True, text=True, timeout=30, check=True)
    assert job.stdout is not None
    job.stdout.close()  # head alone reads it now
    _, stderr = job.communicate(timeout=30)
    assert len(head.stdout.splitlines()) == 2
    assert (job.returncode, stderr) == (141, "")  # no "Exception ignored" from the flush at exit either


@pytest.mark.parametrize(("status", "expected"), [(0, 141), (3, 3)])
def test_a_command_that_finished_keeps_its_own_status(status: int, expected: int, tmp_path: Path) -> None:
    """Its output was all in the buffer when the reader was found gone: a refused retrain still says 3."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        job = printing(2, status, tmp_path, write_end)
    finally:
        os.close(write_end)
    _, stderr = job.communicate(timeout=30)
    assert (job.returncode, stderr) == (expected, "")


def test_a_broken_pipe_that_is_not_stdout_stays_an_unexpected_failure(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(registry_commands, "cmd_models_list", broken)
    assert cli.main(["models", "list", "--registry", "unused"]) == cli.EXIT_FAILURE
    assert "unexpected failure: BrokenPipeError" in capsys.readouterr().err


# -- serve ----------------------------------------------------------------------------------------------------


@pytest.fixture()
def served(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The SIGTERM handler `dealscore serve` hands uvicorn; no server is started."""
    handlers: list[object] = []
    monkeypatch.setattr(service.main, "serve", lambda settings: handlers.append(signal.getsignal(signal.SIGTERM)))
    # Whether this machine's port 8000 is free is not what these tests are about: a server another process ran
    # there failed two of them (tests/test_cli_inputs.py tests the busy port).
    monkeypatch.setattr(service.main, "check_listening_address", lambda host, port: None)
    for name in [n for n in os.environ if n.startswith("DEALSCORE_")]:
        monkeypatch.delenv(name)
    return handlers


def test_serve_says_where_it_listens_on_stdout_and_leaves_stderr_to_the_log(
        served: list[object], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "registry").mkdir()
    assert cli.main(["serve", "--registry", str(tmp_path / "registry"), "--port", "8123"]) == 0
    out, err = capsys.readouterr()
    assert out == cli.try_it_line("127.0.0.1", 8123) + "\n" and err == ""
    assert "Authorization" not in out


def test_serve_with_an_api_token_prints_a_curl_that_sends_it_without_printing_it(
        served: list[object], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "registry").mkdir()
    monkeypatch.setenv("DEALSCORE_API_TOKEN", "s3cret")
    assert cli.main(["serve", "--registry", str(tmp_path / "registry"), "--port", "8123"]) == 0
    out, _ = capsys.readouterr()
    assert '-H "Authorization: Bearer $DEALSCORE_API_TOKEN"' in out and "s3cret" not in out


def test_serve_says_at_start_that_its_registry_does_not_exist(served: list[object], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped --registry started with the usual banner; only the first request's 503 told."""
    assert cli.main(["serve", "--registry", str(tmp_path / "typo"), "--port", "8123"]) == 0
    out, _ = capsys.readouterr()
    assert f"the model registry at {tmp_path / 'typo'} does not exist (yet)" in out and "curl" not in out


def test_serve_says_how_the_demo_model_is_built_on_stdout(served: list[object], monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def demo_model(progress: Callable[[str], None]) -> Path:
        progress("training the demo model")
        return tmp_path / "demo-model"

    monkeypatch.setattr(cli, "ensure_demo_model", demo_model)
    assert cli.main(["serve"]) == 0
    out, err = capsys.readouterr()
    assert "training the demo model" in out and "is starting on" in out and err == ""


def test_serve_leaves_sigterm_to_uvicorn(served: list[object], own_sigterm_handler: list[int],
                                         tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["serve", "--registry", str(tmp_path / "registry")]) == 0
    assert served == [before]


def test_other_commands_handle_sigterm_while_they_run(own_sigterm_handler: list[int],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []

    def look(args: argparse.Namespace) -> int:
        seen.append(signal.getsignal(signal.SIGTERM))
        return 0

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(cli, "cmd_demo_data", look)
    assert cli.main(["demo-data", "--out", "unused"]) == 0
    assert len(seen) == 1 and seen[0] not in (before, signal.SIG_DFL, signal.SIG_IGN)


def _console(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          check=False, timeout=300)


def test_ctrl_c_while_the_command_starts_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """In the first half second (pandas and the rest loading) Ctrl-C printed a Python traceback (an input review).
    The interrupt is raised where pandas is imported, as a Ctrl-C then would."""
    done = _console(
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def importing(name, *args, **kwargs):\n"
        "    if name == 'pandas':\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = importing\n"
        "from dealscore.console import run\n"
        "sys.argv = ['dealscore', 'demo-data', '--out', 'crm']\n"
        "sys.exit(run())\n", tmp_path)
    said = "dealscore: interrupted by SIGINT while starting; nothing was done\n"
    assert (done.returncode, done.stderr) == (130, said)
    assert not (tmp_path / "crm").exists()


def test_a_signal_after_the_command_finished_leaves_its_exit_status(tmp_path: Path) -> None:
    """Ctrl-C in the interpreter's teardown, after `train` had written its artifact or `retrain` published, ended
    the process by the signal: a wrapper read the committed work as failed (an input review)."""
    done = _console(
        "import os, signal, sys\n"
        "from dealscore.console import run\n"
        "sys.argv = ['dealscore', 'demo-data', '--out', 'crm', '--deals', '300']\n"
        "code = run()\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "print('after the signals')\n"
        "sys.exit(code)\n", tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, "after the signals"), done.stderr
    assert (tmp_path / "crm" / "deals.csv").is_file()
