"""Serving benchmark: the service beside a floor server and a bare reference server, measured in one run.

    .venv/bin/python -m bench.serving_bench [--model DIR] [--seconds 4] [--rounds 3] [--json FILE]

Three servers run on 127.0.0.1 (one uvicorn worker each, one native thread):
  floor    the service's own app with the model pass replaced by canned scores (bench/floor_server.py)
  bare     the same model behind a minimal FastAPI endpoint, hand-built numpy columns (bench/bare_server.py)
  service  the real service (service.app as the server builds it: reasons, gap lists, score log)
and are measured in turn, round after round (the median over rounds is reported, so drift on a shared
machine hits all three alike): single-deal p50/p99 with one connection, requests/s and p99 with 8
connections, deals/s for batches of 1,000 (sequential, from Python), and each server's CPU time per
request (user + system from /proc: robust to other load on a shared machine); then the model's own
throughput in-process. The load driver is wrk when installed (apt-get install wrk), a small Python driver
otherwise. Without --model a demo
model is trained first (synthetic CRM, 20,000 deals, with ideal profiles for the gap lists).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.tables import format_table

ROOT = Path(__file__).resolve().parents[1]
SERVERS = {
    "floor": "bench.floor_server:create_floor_app",
    "bare": "bench.bare_server:create_bare_app",
    "service": "service.app:create_app_from_env",
}
# uvicorn as `dealscore serve` runs it (service/main.py), on one worker: its command line cannot name the HTTP
# protocol class the service runs on.
DEPLOYED_SERVER = ("import sys, uvicorn; from service.http_protocol import BoundedHeadProtocol; "
                   "uvicorn.run(sys.argv[1], factory=True, host='127.0.0.1', port=int(sys.argv[2]), workers=1, "
                   "access_log=False, log_level='warning', server_header=False, http=BoundedHeadProtocol)")
BATCH = 1000
GOALS = ("single-deal p50 <= 1.5x floor and <= 1.2x bare; requests/s at concurrency 8 >= 0.5x floor; "
         "batch deals/s >= 0.5x in-process (score + gap lists, the same work as the answer)")


# ---------------------------------------------------------------------------------------------------
# Model and deals


def demo_model(out: Path, n_deals: int = 20_000) -> Path:
    """Train the demo model (with ideal profiles, so gap lists are real work) into `out`."""
    from model.artifact import save_artifact
    from model.dataset import dataset_from_frames
    from training.fit import TrainConfig, train
    from training.synthetic_crm import generate

    crm = generate(seed=7, n_deals=n_deals)
    dataset = dataset_from_frames(crm.deals, crm.clients, crm.holdings, for_training=True)
    result = train(dataset, TrainConfig(threads=1))
    if getattr(result.model, "profiles", None) is None:
        from training.profiles_fit import fit_profiles

        result.model.profiles = fit_profiles(dataset.deals, dataset.clients, dataset.holdings)
    return save_artifact(result.model, out, result.metadata)


def bench_deals(n: int, crm: Any = None) -> list[dict[Any, Any]]:
    """The latest `n` deals of the demo CRM (or of `crm`, a SyntheticCRM) as a CRM sends them: the deal and its
    client (attributes, no history)."""
    from training.synthetic_crm import generate

    crm = crm if crm is not None else generate(seed=7, n_deals=20_000)
    clients = {r["client_id"]: r for r in crm.clients.to_dict("records")}
    deals = crm.deals.drop(columns=["status", "closed_at"]).tail(n)
    out = []
    for record in deals.to_dict("records"):
        deal = {k: _plain(v) for k, v in record.items() if _plain(v) is not None}
        client = clients.get(deal.get("client_id"))
        if client is not None:
            deal["client"] = {k: _plain(v) for k, v in client.items() if _plain(v) is not None}
        out.append(deal)
    return out


def _plain(value: Any) -> Any:
    if value is None or value is pd.NaT or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date().isoformat()
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------------------------------------------
# Servers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(name: str, model_dir: Path | None, home: Path,
            settings: Mapping[str, str] | None = None) -> Iterator[tuple[int, int]]:
    """Server `name` on a free port (yields port and pid); `settings`: more DEALSCORE_* variables."""
    port = _free_port()
    # DEALSCORE_HOME in the run's temporary directory: the service's score log (a SQLite file by default)
    # is part of what is measured, but never written into the working tree.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DEALSCORE_LOG_LEVEL": "INFO", "PYTHONPATH": str(ROOT),
           "DEALSCORE_HOME": str(home / name), **(settings or {})}
    if model_dir is not None:
        env["DEALSCORE_MODEL_DIR"] = str(model_dir)
    command = [sys.executable, "-m", "uvicorn", SERVERS[name], "--factory", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1", "--no-access-log", "--log-level", "warning"]
    if name != "bare":  # the service's app runs on the HTTP protocol `dealscore serve` runs it on (its head limits)
        command = [sys.executable, "-c", DEPLOYED_SERVER, SERVERS[name], str(port)]
    # Logs go to /dev/null: the service still formats and writes its line per request, as in production.
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(port, name, process)
        yield port, process.pid
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(port: int, name: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    probe = json.dumps({"deals": [bench_deals(1)[0]]}).encode()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the {name} server exited with status {process.returncode}")
        try:
            status, _ = _post(port, "/v1/score", probe)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the {name} server did not answer within 60 s")


def _post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers={"content-type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# ---------------------------------------------------------------------------------------------------
# Load drivers


@dataclass
class Load:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    requests: int = 0
    cpu_ms_per_request: float = float("nan")  # the server process's CPU time (user + system) per request


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc); robust to other load on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _wrk_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def wrk(port: int, body_file: Path, connections: int, seconds: float) -> Load:
    script = body_file.with_suffix(".lua")
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("ERRORS %d\\n", summary.errors.status + summary.errors.connect + '
        "summary.errors.read + summary.errors.write + summary.errors.timeout))\n"
        '  io.write(string.format("P50US %f\\nP99US %f\\n", latency:percentile(50), latency:percentile(99)))\n'
        "end\n")
    threads = min(connections, 2)
    out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(seconds, 1):.0f}s",
                          "--timeout", "60s", "-s", str(script), f"http://127.0.0.1:{port}/v1/score"],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    p50 = float(re.search(r"P50US ([\d.]+)", out)[1]) / 1000  # type: ignore[index]
    p99 = float(re.search(r"P99US ([\d.]+)", out)[1]) / 1000  # type: ignore[index]
    errors = int(re.search(r"ERRORS (\d+)", out)[1])  # type: ignore[index]
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    return Load(rps, p50, p99, errors, requests)


def sequential(port: int, body: bytes, seconds: float, at_least: int = 3) -> Load:
    """One keep-alive connection, requests back to back for `seconds` and at least `at_least` of them
    (a batch of 1,000 may take longer than a whole measurement window)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(latencies) < at_least:
        t = time.perf_counter()
        connection.request("POST", "/v1/score", body=body, headers={"content-type": "application/json"})
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - t)
        errors += response.status != 200
    connection.close()
    elapsed = time.perf_counter() - started
    every = np.array(latencies) * 1000
    return Load(len(latencies) / elapsed, float(np.percentile(every, 50)), float(np.percentile(every, 99)),
                errors, len(latencies))


def python_driver(port: int, body: bytes, connections: int, seconds: float) -> Load:
    """Keep-alive connections, each sending the body back to back; a fallback when wrk is missing."""
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    stop = time.perf_counter() + seconds

    def run(i: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"content-type": "application/json"}
        while time.perf_counter() < stop:
            started = time.perf_counter()
            connection.request("POST", "/v1/score", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            latencies[i].append(time.perf_counter() - started)
            errors[i] += response.status != 200
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    every = np.array([x for per in latencies for x in per]) * 1000
    return Load(every.size / elapsed, float(np.percentile(every, 50)), float(np.percentile(every, 99)),
                sum(errors), int(every.size))


# ---------------------------------------------------------------------------------------------------
# The run


@dataclass
class Results:
    single: dict[str, list[Load]] = field(default_factory=dict)
    concurrent: dict[str, list[Load]] = field(default_factory=dict)
    batch: dict[str, list[Load]] = field(default_factory=dict)
    in_process_deals_per_s: float = 0.0
    in_process_with_gaps_deals_per_s: float = 0.0
    in_process_single_ms: float = 0.0
    driver: str = ""


def in_process(model_dir: Path, deals: list[dict[str, Any]], seconds: float) -> tuple[float, float, float]:
    """In this process, columns built once: deals/s of ScoringModel.score on 1,000-deal batches; the same
    with the gap lists of their clients; and one deal's score and gap list in CPU ms."""
    from model.artifact import load_artifact
    from model.records import deal_columns

    model, _ = load_artifact(model_dir)
    columns = deal_columns(deals)
    one = deal_columns(deals[:1])
    profiles = getattr(model, "profiles", None)
    facts: list[Any] = []
    if profiles is not None:
        from model.profiles import ClientFacts

        facts = [ClientFacts(client_id=str(c)) for c in dict.fromkeys(columns["client_id"]) if c is not None]

    def throughput(with_gaps: bool) -> float:
        model.score(columns, n_reasons=5)
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds or runs < 2:
            model.score(columns, n_reasons=5)
            if with_gaps and profiles is not None:
                profiles.gaps_for(facts, top_k=3)
            runs += 1
        return runs * len(deals) / (time.perf_counter() - started)

    per_s, per_s_with_gaps = throughput(False), throughput(True)
    single = []
    one_client = facts[-1:]  # the single-deal answer carries its client's gap list too
    for _ in range(2000):
        t = time.thread_time()
        model.score(one, n_reasons=5)
        if profiles is not None:
            profiles.gaps_for(one_client, top_k=3)
        single.append(time.thread_time() - t)
    return per_s, per_s_with_gaps, float(np.mean(single) * 1000)


def run(model_dir: Path, seconds: float, rounds: int, work: Path) -> Results:
    deals = bench_deals(BATCH)
    single_file, batch_file = work / "single.json", work / "batch.json"
    single_file.write_bytes(json.dumps({"deals": [deals[-1]]}).encode())
    batch_file.write_bytes(json.dumps({"deals": deals}).encode())
    use_wrk = shutil.which("wrk") is not None
    results = Results(driver="wrk" if use_wrk else "python (wrk not installed)")

    def drive(server: tuple[int, int], path: Path, connections: int, duration: float,
              batch: bool = False) -> Load:
        port, pid = server
        cpu_before = cpu_seconds(pid)
        if batch:
            load = sequential(port, path.read_bytes(), duration)
        elif use_wrk:
            load = wrk(port, path, connections, duration)
        else:
            load = python_driver(port, path.read_bytes(), connections, duration)
        if load.requests:
            load.cpu_ms_per_request = (cpu_seconds(pid) - cpu_before) * 1000 / load.requests
        return load

    for name in SERVERS:
        for store in (results.single, results.concurrent, results.batch):
            store[name] = []
    for round_ in range(rounds):
        for name in SERVERS:
            with running(name, model_dir, work) as server:
                drive(server, single_file, 1, 1)  # warm the connection path and caches
                results.single[name].append(drive(server, single_file, 1, seconds))
                results.concurrent[name].append(drive(server, single_file, 8, seconds))
                results.batch[name].append(drive(server, batch_file, 1, seconds, batch=True))
            sys.stderr.write(f"round {round_ + 1}/{rounds}: {name} measured\n")
    (results.in_process_deals_per_s, results.in_process_with_gaps_deals_per_s,
     results.in_process_single_ms) = in_process(model_dir, deals, seconds)
    return results


def _median(loads: list[Load], attribute: str) -> float:
    return float(statistics.median(getattr(x, attribute) for x in loads))


def report(results: Results, rounds: int, seconds: float) -> tuple[str, dict[str, Any]]:
    names = list(SERVERS)
    p50 = {n: _median(results.single[n], "p50_ms") for n in names}
    p99 = {n: _median(results.single[n], "p99_ms") for n in names}
    rps8 = {n: _median(results.concurrent[n], "requests_per_s") for n in names}
    p99_8 = {n: _median(results.concurrent[n], "p99_ms") for n in names}
    batch = {n: _median(results.batch[n], "requests_per_s") * BATCH for n in names}
    cpu1 = {n: _median(results.single[n], "cpu_ms_per_request") for n in names}
    cpu_batch = {n: _median(results.batch[n], "cpu_ms_per_request") / BATCH * 1000 for n in names}
    errors = sum(x.errors for store in (results.single, results.concurrent, results.batch)
                 for loads in store.values() for x in loads)
    in_proc = results.in_process_deals_per_s
    rows = [
        ["single deal p50 (ms), 1 connection", p50["floor"], p50["bare"], p50["service"], "",
         f"{p50['service'] / p50['floor']:.2f}x floor, {p50['service'] / p50['bare']:.2f}x bare"],
        ["single deal p99 (ms), 1 connection", p99["floor"], p99["bare"], p99["service"], "", ""],
        ["server CPU ms per single-deal request", cpu1["floor"], cpu1["bare"], cpu1["service"],
         results.in_process_single_ms,
         f"{cpu1['service'] / cpu1['floor']:.2f}x floor, {cpu1['service'] / cpu1['bare']:.2f}x bare"],
        ["requests/s, 8 connections", rps8["floor"], rps8["bare"], rps8["service"], "",
         f"{rps8['service'] / rps8['floor']:.2f}x floor"],
        ["p99 (ms), 8 connections", p99_8["floor"], p99_8["bare"], p99_8["service"], "", ""],
        ["deals/s, batches of 1,000", batch["floor"], batch["bare"], batch["service"],
         results.in_process_with_gaps_deals_per_s,
         f"{batch['service'] / results.in_process_with_gaps_deals_per_s:.2f}x in-process"],
        ["deals/s in-process, score only (no gap lists)", "", "", "", in_proc,
         f"{batch['service'] / in_proc:.2f}x"],
        ["server CPU us per deal, batches of 1,000", cpu_batch["floor"], cpu_batch["bare"], cpu_batch["service"],
         1e6 / results.in_process_with_gaps_deals_per_s,
         f"{cpu_batch['service'] * results.in_process_with_gaps_deals_per_s / 1e6:.2f}x in-process"],
    ]
    goals = {
        "single_p50_vs_floor": (p50["service"] / p50["floor"], 1.5, "<="),
        "single_p50_vs_bare": (p50["service"] / p50["bare"], 1.2, "<="),
        "rps8_vs_floor": (rps8["service"] / rps8["floor"], 0.5, ">="),
        # Like for like: the service's answer carries each deal's gap list, so the in-process run does too.
        "batch_vs_in_process": (batch["service"] / results.in_process_with_gaps_deals_per_s, 0.5, ">="),
    }
    verdicts = [f"  {k}: {v:.2f} (goal {op} {g}) {'met' if (v <= g if op == '<=' else v >= g) else 'MISSED'}"
                for k, (v, g, op) in goals.items()]
    table = format_table(
        f"Serving benchmark ({rounds} rounds x {seconds:g} s per measurement, median; driver: {results.driver}; "
        f"{os.cpu_count()} CPUs)",
        ["measure", "floor", "bare", "service", "in-process", "service ratio"], rows,
        notes=[f"goals: {GOALS}", *verdicts, f"non-200 answers: {errors}"])
    data = {"cpu_ms_per_single_request": cpu1, "cpu_us_per_batch_deal": cpu_batch,
            "p50_ms": p50, "p99_ms": p99, "rps_8": rps8, "p99_8_ms": p99_8, "batch_deals_per_s": batch,
            "in_process_deals_per_s": in_proc,
            "in_process_with_gaps_deals_per_s": results.in_process_with_gaps_deals_per_s,
            "in_process_single_ms": results.in_process_single_ms,
            "goals": {k: {"value": v, "goal": f"{op} {g}"} for k, (v, g, op) in goals.items()},
            "errors": errors, "driver": results.driver}
    return table, data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serving_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="artifact directory (default: train the demo model)")
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the three servers (median reported)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dealscore-bench-") as tmp:
        work = Path(tmp)
        model_dir = args.model
        if model_dir is None:
            sys.stderr.write("training the demo model (20,000 synthetic deals)...\n")
            model_dir = demo_model(work / "model")
        results = run(model_dir, args.seconds, args.rounds, work)
        table, data = report(results, args.rounds, args.seconds)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
