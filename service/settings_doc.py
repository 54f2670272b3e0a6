"""Write docs/settings.md from the Settings class: `python -m service.settings_doc docs/settings.md [--check]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from service.settings import Settings

__all__ = ["render", "main"]

HEADER = """# Service settings

Every setting of the HTTP service is an environment variable with the `DEALSCORE_` prefix (read by
pydantic-settings when the service starts; `dealscore serve --model/--registry/--host/--port` set the
same values). Generated from `service/settings.py` by `python -m service.settings_doc docs/settings.md`;
a test fails when this page and the code differ.

| variable | default | meaning |
|---|---|---|
"""

FOOTER = """
One more variable is read outside these settings, by the service and the `dealscore` commands alike:
`DEALSCORE_HOME`, the folder of local state, default `./.dealscore` in the folder the command runs
from: the demo data and model (`demo-data/`, `demo-model/`, made on first `dealscore serve`), and the
default SQLite feedback database and spool. Set it to one absolute path so every command finds the same state.

Notes:
- Exactly one model is served per process. With `DEALSCORE_REGISTRY_DIR` the service serves the
  registry's live version; otherwise the artifact in `DEALSCORE_MODEL_DIR`. The model is loaded after
  start-up: `/health/live` answers at once, `/health/ready` answers 503 until the model is loaded and
  has passed a test prediction.
- With a registry the service follows its live version (hot reload): it checks the manifest every
  `DEALSCORE_RELOAD_INTERVAL_SECONDS` and on `POST /v1/admin/reload`, loads, verifies and warms a new
  live version, and only then swaps it in; a refused version leaves the old one serving and shows in
  `GET /v1/model` (`refused`). See docs/operations.md.
- Each worker predicts with one native thread (`OMP_NUM_THREADS=1` is set by `dealscore serve` and the
  container image); scale with `DEALSCORE_WORKERS`, one per CPU core.
- Logs are JSON lines on stderr: `time`, `level`, `logger`, `message`, `request_id`, `method`, `route`, `status`,
  `duration_ms`, `model_version`. Request and response bodies are never logged.
"""


def _default(value: Any) -> str:
    if value is None:
        return "not set"
    return f"`{value}`"


def render() -> str:
    rows = []
    for name, field in Settings.model_fields.items():
        description = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(f"| `DEALSCORE_{name.upper()}` | {_default(field.default)} | {description} |")
    return HEADER + "\n".join(rows) + "\n" + FOOTER


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.settings_doc", description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="docs/settings.md")
    parser.add_argument("--check", action="store_true", help="only check that the file is up to date")
    args = parser.parse_args(argv)
    path, text = Path(args.out), render()
    if args.check:
        if not path.is_file() or path.read_text() != text:
            sys.stderr.write(f"{path} is out of date: run `python -m service.settings_doc {path}`\n")
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
