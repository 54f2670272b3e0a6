"""The `dealscore` command line: demo data, training, offline scoring, client analytics, serving.

Each command prints one clear line on stderr and exits non-zero on failure; input problems are
listed in full (every bad column and row), never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dealscore.feedback_commands import add_feedback_commands
from dealscore.registry_commands import PARALLEL_FITS_HELP, add_registry_commands, at_least_one, grade_summary
from model.errors import DealscoreError

EXIT_INPUT = 2  # the input or the artifact is wrong; the message says what to fix
EXIT_FAILURE = 1  # an unexpected failure


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # noqa: T201 (the CLI's progress goes to stderr)


def _progress() -> Callable[[str], None]:
    started = time.perf_counter()

    def report(step: str) -> None:
        _say(f"[{time.perf_counter() - started:6.1f}s] {step}")

    return report


def cmd_demo_data(args: argparse.Namespace) -> int:
    from training.synthetic_crm import generate, write

    crm = generate(seed=args.seed, n_deals=args.deals)
    paths = write(crm, args.out)
    _say(f"wrote {len(crm.deals):,} deals, {len(crm.clients):,} clients and {len(crm.holdings):,} holdings "
         f"to {args.out} ({len(paths)} files, ground truth in {Path(args.out) / 'truth'})")
    return 0


def _training_config(args: argparse.Namespace) -> object:
    from model.features import FeatureConfig
    from training.fit import TrainConfig

    features = FeatureConfig(include_manager=args.include_manager, exclude=tuple(args.exclude or ()),
                             lost_window_days=args.lost_window_days)
    return TrainConfig(holdout_share=args.holdout_share, features=features, keep_columns=tuple(args.keep or ()),
                       d_floor_per_hour=args.d_floor_per_hour, threads=args.threads,
                       parallel_fits=args.parallel_fits)


def train_artifact(deals: str, clients: str | None, holdings: str | None, mapping: str | None, out: str,
                   config: object | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """Load, validate, fit and write an artifact directory; shared by `train` and the demo `serve`."""
    from model.artifact import save_artifact
    from model.dataset import load_dataset
    from training.fit import TrainConfig, train
    from training.report import render_html

    say = progress or _progress()
    say("reading and validating the data")
    dataset = load_dataset(deals, clients, holdings, mapping, for_training=True)
    result = train(dataset, config if isinstance(config, TrainConfig) else None, progress=say)
    report_json = json.dumps(result.report, indent=2, default=str).encode()
    return save_artifact(result.model, out, result.metadata,
                         {"report.json": report_json, "report.html": render_html(result.report).encode()})


def _summary_table(artifact: Path) -> str:
    meta = json.loads((artifact / "metadata.json").read_text())
    lines = [f"model {meta['version']} ({meta['engine']}{', small-data mode' if meta['small_data'] else ''})",
             f"{'':<22}{'AUC':>8}{'Brier':>8}{'ECE':>8}{'lift@10%':>10}"]
    for name, m in meta["metrics"].items():
        lines.append(f"{name:<22}{m['auc']:>8.3f}{m['brier']:>8.3f}{m['ece']:>8.3f}{m['top_decile_lift']:>10.2f}")
    lines.append(grade_summary(meta))
    for leak in meta["leaks"]:
        verdict = "to review" if leak.get("review_only") else "kept" if leak["kept"] else "excluded"
        lines.append(f"leak guard: {leak['column']} {verdict}: {leak['reason']}")
    lines.append(f"artifact: {artifact} (report.html inside)")
    return "\n".join(lines)


def cmd_train(args: argparse.Namespace) -> int:
    artifact = train_artifact(args.deals, args.clients, args.holdings, args.mapping, args.out,
                              _training_config(args))
    print(_summary_table(artifact))  # noqa: T201 (the summary is the command's output)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from dealscore.offline import score_file

    written = score_file(args.model, args.deals, args.clients, args.holdings, args.mapping, args.out)
    _say(f"scored {written:,} deals into {args.out}")
    return 0


def cmd_gaps(args: argparse.Namespace) -> int:
    from dealscore.offline import gaps_file

    written = gaps_file(args.model, args.clients, args.holdings, args.mapping, args.out, top_k=args.top)
    _say(f"wrote {written:,} gap rows into {args.out}")
    return 0


def cmd_clients(args: argparse.Namespace) -> int:
    from dealscore.offline import clients_file

    written = clients_file(args.deals, args.clients, args.mapping, args.out, as_of=args.as_of, model_dir=args.model)
    _say(f"wrote analytics of {written:,} clients into {args.out}")
    return 0


def demo_model_dir() -> Path:
    base = Path(os.environ.get("DEALSCORE_HOME", Path.cwd() / ".dealscore"))
    return base / "demo-model"


def ensure_demo_model(progress: Callable[[str], None]) -> Path:
    """The demo model trained on generated data, built once and reused."""
    from model.artifact import verify_artifact
    from training.synthetic_crm import generate, write

    target = demo_model_dir()
    if (target / "metadata.json").exists():
        try:
            verify_artifact(target)
            return target
        except DealscoreError as exc:
            progress(f"rebuilding the demo model: {exc.message}")
    data_dir = target.parent / "demo-data"
    progress("generating demo CRM data (seed 7)")
    write(generate(seed=7, n_deals=20_000), data_dir)
    train_artifact(str(data_dir / "deals.csv"), str(data_dir / "clients.csv"), str(data_dir / "holdings.csv"),
                   None, str(target), progress=progress)
    return target


def cmd_serve(args: argparse.Namespace) -> int:
    from service.main import serve
    from service.settings import Settings

    overrides: dict[str, Any] = {}
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    if args.model:
        overrides["model_dir"] = args.model
    if args.registry:
        overrides["registry_dir"] = args.registry
    settings = Settings(**overrides)
    if settings.model_dir is None and getattr(settings, "registry_dir", None) is None:
        settings = Settings(**{**overrides, "model_dir": str(ensure_demo_model(_progress()))})
    _say(try_it_line(settings.host, settings.port))
    serve(settings)
    return 0


def try_it_line(host: str, port: int) -> str:
    """A ready-to-paste request for the demo model (a known demo client, a product of its catalogue)."""
    deal = ('{"deals": [{"deal_id": "D1", "client_id": "C00042", "created_at": "2025-12-01", "amount": 12000, '
            '"product": "credit_line", "effort_hours": 6, "source": "referral"}]}')
    return (f"dealscore is starting on http://{host}:{port} (API docs at /docs). Once it is up, score a deal:\n"
            f"  curl -s http://{host}:{port}/v1/score -H 'content-type: application/json' -d '{deal}'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dealscore", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo-data", help="write a synthetic CRM with its ground truth")
    demo.add_argument("--out", required=True)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--deals", type=int, default=20_000)
    demo.set_defaults(run=cmd_demo_data)

    def data_options(p: argparse.ArgumentParser, deals_required: bool = True) -> None:
        p.add_argument("--deals", required=deals_required, help="CSV, Parquet, or URL::table-or-query")
        p.add_argument("--clients")
        p.add_argument("--holdings")
        p.add_argument("--mapping", help="YAML mapping of the CRM's own column names and values")

    train = commands.add_parser("train", help="fit and evaluate a model, write an artifact directory")
    data_options(train)
    train.add_argument("--out", required=True)
    train.add_argument("--holdout-share", type=float, default=0.2)
    train.add_argument("--include-manager", action="store_true", help="use the deal owner as a feature")
    train.add_argument("--exclude", nargs="*", help="columns never used as features")
    train.add_argument("--keep", nargs="*", help="columns the leak guard flags that you keep anyway")
    train.add_argument("--lost-window-days", type=int, default=360)
    train.add_argument("--d-floor-per-hour", type=float, default=None)
    train.add_argument("--threads", type=at_least_one, default=1,
                       help="native threads for fitting (more than 1 helps only on an idle machine)")
    train.add_argument("--parallel-fits", type=at_least_one, default=None, help=PARALLEL_FITS_HELP)
    train.set_defaults(run=cmd_train)

    score = commands.add_parser("score", help="score a file of deals offline")
    score.add_argument("--model", required=True)
    data_options(score)
    score.add_argument("--out", required=True)
    score.set_defaults(run=cmd_score)

    gaps = commands.add_parser("gaps", help="every client's cross-sell gap list")
    gaps.add_argument("--model", required=True)
    gaps.add_argument("--clients", required=True)
    gaps.add_argument("--holdings", required=True)
    gaps.add_argument("--mapping")
    gaps.add_argument("--top", type=int, default=5)
    gaps.add_argument("--out", required=True)
    gaps.set_defaults(run=cmd_gaps)

    clients = commands.add_parser("clients", help="client analytics: status, RFM, ABC, XYZ, golden clients")
    data_options(clients)
    clients.add_argument("--as-of", default=None, help="ISO date; default: the latest deal date")
    clients.add_argument("--model", default=None, help="artifact with ideal profiles, for potential income")
    clients.add_argument("--out", required=True)
    clients.set_defaults(run=cmd_clients)

    serve = commands.add_parser("serve", help="run the HTTP service (trains the demo model when none is given)")
    serve.add_argument("--model")
    serve.add_argument("--registry")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(run=cmd_serve)
    add_registry_commands(commands)
    add_feedback_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except DealscoreError as exc:
        _say(f"dealscore {args.command}: {exc.report()}")
        return EXIT_INPUT
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: one line, no traceback, unless debugging
        if os.environ.get("DEALSCORE_DEBUG"):
            raise
        _say(f"dealscore {args.command}: unexpected failure: {type(exc).__name__}: {exc} "
             "(set DEALSCORE_DEBUG=1 for the traceback)")
        return EXIT_FAILURE
