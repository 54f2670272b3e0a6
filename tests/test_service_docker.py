"""The container image: builds, runs as non-root, becomes healthy, scores. Needs a Docker daemon."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOME = "/var/lib/dealscore"  # the image's DEALSCORE_HOME


def _docker_unavailable() -> str | None:
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    try:
        probe = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                               timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker info failed: {exc}"
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"no Docker daemon is reachable ({reason[:160]})"
    return None


UNAVAILABLE = _docker_unavailable()
needs_docker = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"Docker image test skipped: {UNAVAILABLE}")


def test_dockerfile_is_slim_non_root_and_health_checked() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "-slim" in text and "USER 10001" in text and "/health/ready" in text and "HEALTHCHECK" in text


def test_the_image_runs_its_command_under_an_init_that_passes_signals_on() -> None:
    # The command as PID 1 ignored a SIGTERM until it had set a handler: `docker stop` in its first seconds waited
    # for SIGKILL (the docker test below measures it).
    assert 'ENTRYPOINT ["tini", "--"]' in (ROOT / "Dockerfile").read_text()


def test_the_image_context_leaves_out_what_the_service_does_not_need() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    tag = f"dealscore-test:{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "build", "--build-arg", "DEMO_DEALS=3000", "-t", tag, str(ROOT)], check=True,
                   timeout=1800)
    yield tag
    subprocess.run(["docker", "image", "rm", "-f", tag], check=False, capture_output=True)


@pytest.mark.slow
@needs_docker
def test_the_container_becomes_healthy_and_scores(image: str) -> None:
    name = f"dealscore-smoke-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "run", "-d", "--name", name, "-p", "127.0.0.1::8000", image], check=True,
                   capture_output=True, timeout=60)
    try:
        port = subprocess.run(["docker", "port", name, "8000/tcp"], check=True, capture_output=True, text=True,
                              timeout=30).stdout.strip().splitlines()[0].rsplit(":", 1)[1]
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline, "the container never became ready"
            time.sleep(1)
        user = subprocess.run(["docker", "exec", name, "id", "-u"], capture_output=True, text=True, check=True)
        assert user.stdout.strip() != "0"
        body = json.dumps({"deals": [{"deal_id": "smoke-1", "created_at": "2025-06-01", "amount": 1000}]}).encode()
        request = urllib.request.Request(f"{base}/v1/score", data=body, headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["scores"][0]["deal_id"] == "smoke-1"
        assert 0 <= answer["scores"][0]["p_win"] <= 1
        # The image's own HEALTHCHECK (every 10 s, on /health/ready) must report the container healthy.
        deadline = time.monotonic() + 60
        while (status := subprocess.run(["docker", "inspect", "--format", "{{.State.Health.Status}}", name],
                                        capture_output=True, text=True, check=True).stdout.strip()) != "healthy":
            assert status == "starting" and time.monotonic() < deadline, f"container health: {status}"
            time.sleep(1)
        # State only in DEALSCORE_HOME, the folder the Dockerfile says to mount.
        changed = subprocess.run(["docker", "diff", name], capture_output=True, text=True, check=True).stdout
        paths = [line.split(" ", 1)[1] for line in changed.splitlines() if line.strip()]
        assert [path for path in paths if path not in ("/var", "/var/lib") and path != HOME
                and not path.startswith(HOME + "/")] == []
        _stop_promptly_and_gracefully(name)
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


def _stop_promptly_and_gracefully(name: str) -> None:
    """`docker stop` (SIGTERM, SIGKILL after 20 s): done within 5 s, by the service's own stop, not by SIGKILL."""
    started = time.monotonic()
    subprocess.run(["docker", "stop", "-t", "20", name], check=True, capture_output=True, timeout=60)
    took = time.monotonic() - started
    code = subprocess.run(["docker", "inspect", "--format", "{{.State.ExitCode}}", name], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert took < 5 and code != "137", f"docker stop took {took:.1f} s, exit status {code}"


@pytest.mark.slow
@needs_docker
def test_docker_stop_ends_the_container_at_once_also_while_it_starts(image: str) -> None:
    """A stop in the service's first second, while it imports: as PID 1 it ignored the SIGTERM and was SIGKILLed
    after the grace period (10.1 s, exit 137)."""
    name = f"dealscore-stop-{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "run", "-d", "--name", name, image], check=True, capture_output=True, timeout=60)
    try:
        time.sleep(1)
        _stop_promptly_and_gracefully(name)
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)
