"""The `dealscore` command line: demo data, training, scoring, client analytics, serving, retraining, feedback.

Each command prints one clear line on stderr and exits non-zero on failure; input problems are
listed in full (every bad column and row), never as a traceback. Ctrl-C and SIGTERM end a command with one
line and 130 or 143, as shells report a command a signal ended; a reader that stops early (`| head`) ends
it quietly with 141, as it does any Unix tool.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from dealscore.arguments import (
    MAPPING_HELP,
    MODEL_HELP,
    SOURCE,
    add_data_options,
    add_training_options,
    as_of_day,
    at_least_one,
    at_least_zero,
    grade_shares,
    refused_options,
)
from dealscore.feedback_commands import add_feedback_commands
from dealscore.outputs import check_artifact_place, check_output_file, disk_full, refuse_dash
from dealscore.registry_commands import add_registry_commands, grade_summary
from model.errors import ArtifactError, DealscoreError, counted
from model.metrics import SOLID_HOLDOUT
from model.terminal import terminal_text

if TYPE_CHECKING:  # imported lazily at run time, so `dealscore --help` stays fast
    from service.settings import Settings

EXIT_INPUT = 2  # the input or the artifact is wrong; the message says what to fix
EXIT_RETRY = 4  # nothing is wrong with the input: a lock was held or a database away; run it again later
EXIT_FAILURE = 1  # an unexpected failure
# A command a signal ended: 128 + the signal's number, the status shells report for it (130 Ctrl-C, 143 SIGTERM).
EXIT_SIGNAL_BASE = 128
EXIT_STDOUT_CLOSED = EXIT_SIGNAL_BASE + signal.SIGPIPE  # 141, what a shell reports for `yes | head -1`'s yes


def _say(message: str) -> None:
    print(terminal_text(message), file=sys.stderr, flush=True)  # noqa: T201 (the CLI's progress goes to stderr)


def _tell(message: str) -> None:
    # flushed: `dealscore serve` runs until stopped, and a redirected stdout would hold the lines till then
    print(message, flush=True)  # noqa: T201 (what serve says to the person who started it)


def _progress(say: Callable[[str], None] = _say) -> Callable[[str], None]:
    started = time.perf_counter()

    def report(step: str) -> None:
        say(f"[{time.perf_counter() - started:6.1f}s] {step}")

    return report


def cmd_demo_data(args: argparse.Namespace) -> int:
    from dealscore.outputs import check_output_folder
    from training.synthetic_crm import export_as_of, generate, write

    check_output_folder(args.out)  # before generating: an --out naming a file failed with a traceback
    _refuse_to_replace_an_export(Path(args.out))
    crm = generate(seed=args.seed, n_deals=args.deals)
    if args.until is not None:
        first = crm.deals["created_at"].min()
        crm = export_as_of(crm, args.until)
        if crm.deals.empty:  # nothing to train on: said before anything is replaced
            raise DealscoreError(f"--until: expected a day on or after the demo CRM's first deal ({first:%Y-%m-%d}), "
                                 f"got {args.until:%Y-%m-%d}: the export would hold no deals")
    paths = write(crm, args.out)
    _say(f"wrote {len(crm.deals):,} deals, {len(crm.clients):,} clients and {len(crm.holdings):,} holdings "
         f"to {args.out} ({len(paths)} files, ground truth in {Path(args.out) / 'truth'})"
         + (f", as an export taken on {args.until:%Y-%m-%d}" if args.until is not None else ""))
    return 0


def _refuse_to_replace_an_export(folder: Path) -> None:
    """demo-data replaces deals.csv, clients.csv and holdings.csv: only an earlier demo data set's, known by
    its ground truth beside them. `--out /srv/crm-export` once replaced a real export without a word."""
    from model.artifact import METADATA_FILE
    from model.registry import MANIFEST_FILE
    from training.synthetic_crm import is_demo_data

    # A model artifact's or a registry's folder: the tables written beside it were copied into the registry with
    # the model, and blocked the next `train --out` there (the new-user review).
    for marker, what in ((METADATA_FILE, "a model artifact"), (MANIFEST_FILE, "a model registry")):
        if (folder / marker).exists():
            raise DealscoreError(f"--out: expected a new folder or an earlier demo data set, got {folder}, which "
                                 f"holds {what} ({marker}). Choose another folder")
    tables = [name for name in ("deals.csv", "clients.csv", "holdings.csv") if (folder / name).exists()]
    if tables and not is_demo_data(folder):
        raise DealscoreError(f"--out: expected a new folder or an earlier demo data set, got {folder}, which "
                             f"holds {', '.join(tables)} with no demo ground truth beside (truth/): writing the "
                             "demo data there would replace them. Choose another folder, or remove them first")


def _training_config(args: argparse.Namespace) -> object:
    from model.features import FeatureConfig
    from training.fit import TrainConfig

    with refused_options():
        features = FeatureConfig(include_manager=args.include_manager, exclude=tuple(args.exclude or ()),
                                 lost_window_days=args.lost_window_days, history_lag_days=args.history_lag_days)
        return TrainConfig(holdout_share=args.holdout_share, features=features, keep_columns=tuple(args.keep or ()),
                           d_floor_per_hour=args.d_floor_per_hour, threads=args.threads,
                           parallel_fits=args.parallel_fits, grade_shares=grade_shares(args.grade_shares))


def train_artifact(deals: str, clients: str | None, holdings: str | None, mapping: str | None, out: str,
                   config: object | None = None, progress: Callable[[str], None] | None = None) -> Path:
    """Load, validate, fit and write an artifact directory; shared by `train` and the demo `serve`."""
    from model.artifact import save_artifact
    from model.dataset import load_dataset
    from training.fit import TrainConfig, train
    from training.report import report_files

    say = progress or _progress()
    say("reading and validating the data")
    dataset = load_dataset(deals, clients, holdings, mapping, for_training=True)
    result = train(dataset, config if isinstance(config, TrainConfig) else None, progress=say)
    return save_artifact(result.model, out, result.metadata, report_files(result))


def _summary_table(artifact: Path) -> str:
    from model.metrics import holdout_noise_text, probability_caution, slice_auc_caveat

    meta = json.loads((artifact / "metadata.json").read_text())
    data = meta["data"]
    lines = [f"model {meta['version']} ({meta['engine']}{', small-data mode' if meta['small_data'] else ''})",
             f"data: {data['deals']:,} deals created {data['first_deal']} to {data['last_deal']}: "
             f"{data['won']:,} won and {data['lost']:,} lost (trained on), {data['open_deals']:,} open (not)"]
    tested = meta["metrics"].get("model", {})
    if tested.get("deals"):
        # How many deals the figures stand on: 8 held-out deals printed an AUC of 1.000 like any other (a review).
        rough = "; few: read the figures as rough" if tested["deals"] < SOLID_HOLDOUT else ""
        lines.append(f"tested on the latest {tested['deals']:,} closed deals (win rate {tested['win_rate']:.0%})"
                     f"{rough}")
        interval = holdout_noise_text(tested)
        if interval:
            lines.append(interval)
    lines.append(f"{'':<22}{'AUC':>8}{'Brier':>8}{'ECE':>8}{'lift@10%':>10}")
    for name, m in meta["metrics"].items():
        lines.append(f"{name:<22}{_metric(m['auc'], 8, 3)}{_metric(m['brier'], 8, 3)}{_metric(m['ece'], 8, 3)}"
                     f"{_metric(m['top_decile_lift'], 10, 2)}")
    caution = meta.get("caution") or probability_caution(meta["metrics"])  # older artifacts: from their metrics
    if caution:
        lines.append(caution)
    lines.append(grade_summary(meta))
    report = artifact / "report.json"
    reported = json.loads(report.read_text()) if report.is_file() else {}
    published = reported.get("published") or {}
    if published.get("calibration_slice_auc") is not None:
        # The served model's own figure (the holdout's are the evaluation model's): a bank export's published
        # model had a Platt slope of 0.25 against the evaluation model's 3.0, and nothing said how it ranked.
        caveat = slice_auc_caveat(meta.get("engine"), published.get("calibration"))
        lines.append(f"published model (refitted on all closed deals): ranks its own latest "
                     f"{published.get('calibration_deals') or 0:,} deals at AUC "
                     f"{published['calibration_slice_auc']:.3f}, fitted on the deals before them"
                     f"{f' ({caveat})' if caveat else ''}")
    value_line = (_value_summary(reported.get("value"), bool(meta.get("value", {}).get("value_model")))
                  if reported else None)
    if value_line:
        lines.append(value_line)
    no_value_model = _no_value_model_summary(meta)
    if no_value_model:
        lines.append(no_value_model)
    if meta.get("empty_columns"):
        lines.append(f"empty columns (no value in any won or lost deal), trained without: "
                     f"{', '.join(meta['empty_columns'])}")
    if meta.get("unsteady_columns"):
        lines.append(f"no level codes (level win rates and won amounts do not carry over between halves of the "
                     f"deals; their win rates stay): {', '.join(meta['unsteady_columns'])}")
    for leak in meta["leaks"]:
        verdict = "to review" if leak.get("review_only") else "kept" if leak["kept"] else "excluded"
        lines.append(f"leak guard: {leak['column']} {verdict}: {leak['reason']}")
    lines.append(f"artifact: {artifact} (report.html inside)")
    return "\n".join(lines)


def _value_summary(value: Mapping[str, Any] | None, has_value_model: bool) -> str | None:
    """One line on the value model (deals without an amount): its holdout error beside guessing the median."""
    if not value:
        return None
    if not value.get("evaluated"):
        if not has_value_model:
            return None  # no value model: _no_value_model_summary says what that means
        return ("value model (deals without an amount): not measured, its values not corrected for spread: "
                f"{value['why']}")
    errors = value["errors"]
    baselines = "; ".join(f"guessing the {name}: {e['mean_abs_log_error']:.3f}" for name, e in errors.items()
                          if name != "model")
    return (f"value model (deals without an amount): mean |log error| {errors['model']['mean_abs_log_error']:.3f} on "
            f"{value['holdout_won_deals_with_amount']:,} holdout wins ({baselines}); expected amount = typical "
            f"amount x {value['spread']:.2f}")


def _no_value_model_summary(meta: Mapping[str, Any]) -> str | None:
    """Why deals scored without an amount get no value, when the grade line has cut-offs and so does not say it:
    lost deals quoted an amount while too few won deals carried one (a CRM that clears the amount on a win)."""
    value = meta.get("value") or {}
    if not value or value.get("value_model") or not meta.get("grade_cutoffs", {}).get("a_min_expected_value", 0) > 0:
        return None
    return (f"no value model: {value['won_deals_with_amount']:,} won deals with an amount above 0, it needs "
            f"{value['value_model_needs_won_deals']}; a deal scored without an amount gets no value and grade C, and "
            "the cut-offs were set on the amounts of the other deals")


def _metric(value: float | None, width: int, places: int) -> str:
    # null in metadata.json (strict JSON) where a metric could not be computed, e.g. a one-class holdout
    return f"{'n/a':>{width}}" if value is None or value != value else f"{value:>{width}.{places}f}"


def cmd_train(args: argparse.Namespace) -> int:
    from model.artifact import check_target, signing_key

    # Before the fit: a refused --out, or a signing key too short to use, must not cost a whole training first.
    signing_key()
    refuse_dash(args.out, "--out", "a folder")
    check_target(args.out)
    check_artifact_place(args.out)
    artifact = train_artifact(args.deals, args.clients, args.holdings, args.mapping, args.out,
                              _training_config(args))
    print(terminal_text(_summary_table(artifact)))  # noqa: T201 (the summary is the command's output)
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    from model.artifact import sign_artifact

    signed = sign_artifact(args.model)
    print(terminal_text(f"{args.model}: {'signed' if signed else 'already signed with this key'}"))  # noqa: T201 (the result)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from dealscore.offline import score_file

    created = check_output_file(args.out, inputs=_input_files(args, "model", "deals", "clients", "holdings", "mapping"))
    written = score_file(args.model, args.deals, args.clients, args.holdings, args.mapping, args.out,
                         warn=lambda message: _say(f"note: {message}"))
    _say(f"scored {counted(written, 'deal')} into {args.out}{_created_note(created)}")
    return 0


def cmd_gaps(args: argparse.Namespace) -> int:
    from dealscore.offline import gaps_file

    created = check_output_file(args.out, inputs=_input_files(args, "model", "clients", "holdings", "mapping"))
    written = gaps_file(args.model, args.clients, args.holdings, args.mapping, args.out, top_k=args.top,
                        as_of=args.as_of, warn=lambda message: _say(f"note: {message}"))
    _say(f"wrote {written:,} gap rows into {args.out}{_created_note(created)}")
    return 0


def cmd_clients(args: argparse.Namespace) -> int:
    from dealscore.offline import clients_file
    from model.client_analytics import DEFAULT_XYZ_ACTIVE_SHARES, check_xyz_shares
    from model.grades import check_pareto_shares

    abc_shares = grade_shares(args.abc_shares)
    xyz_shares = DEFAULT_XYZ_ACTIVE_SHARES if args.xyz_shares is None else (args.xyz_shares[0], args.xyz_shares[1])
    with refused_options({"abc_shares": "--abc-shares", "xyz_shares": "--xyz-shares"}):
        check_pareto_shares("abc_shares", abc_shares)
        check_xyz_shares("xyz_shares", xyz_shares)
    created = check_output_file(args.out, inputs=_input_files(args, "model", "deals", "clients", "holdings", "mapping"))
    written = clients_file(args.deals, args.clients, args.holdings, args.mapping, args.out, as_of=args.as_of,
                           model_dir=args.model, lost_window_days=args.lost_window_days,
                           warn=lambda message: _say(f"note: {message}"), abc_shares=abc_shares,
                           xyz_shares=xyz_shares)
    _say(f"wrote analytics of {counted(written, 'client')} into {args.out}{_created_note(created)}")
    return 0


def _input_files(args: argparse.Namespace, *names: str) -> dict[str, str | None]:
    return {f"--{name}": getattr(args, name, None) for name in names}


def _created_note(folder: Path | None) -> str:
    # A mistyped folder in --out is created, not refused: saying so lets the user notice the typo.
    return f" (created the folder {folder})" if folder is not None else ""


def demo_model_dir() -> Path:
    base = Path(os.environ.get("DEALSCORE_HOME", Path.cwd() / ".dealscore"))
    return base / "demo-model"


def ensure_demo_model(progress: Callable[[str], None]) -> Path:
    """The demo model trained on generated data, built once and reused."""
    from model.artifact import verify_artifact
    from training.report import REPORT_FILES
    from training.synthetic_crm import generate, write

    target = demo_model_dir()
    if (target / "metadata.json").exists():
        try:
            verify_artifact(target)
            return target
        except DealscoreError as exc:
            progress(f"rebuilding the demo model: {exc.message}")
            # Its own files only (a damaged metadata.json no longer says which files are the artifact's, and
            # save_artifact refuses to replace a folder it cannot recognise): anything else stays, and is named.
            for name in ("metadata.json", "model.joblib", *REPORT_FILES):  # what train_artifact writes
                (target / name).unlink(missing_ok=True)
    data_dir = target.parent / "demo-data"
    progress("generating demo CRM data (seed 7)")
    write(generate(seed=7, n_deals=20_000), data_dir)
    train_artifact(str(data_dir / "deals.csv"), str(data_dir / "clients.csv"), str(data_dir / "holdings.csv"),
                   None, str(target), progress=progress)
    return target


# The serve options and the settings they set; any other setting comes from its DEALSCORE_* variable.
SERVE_OPTIONS = {"host": "--host", "port": "--port", "model_dir": "--model", "registry_dir": "--registry"}


def cmd_serve(args: argparse.Namespace) -> int:
    from service.main import check_listening_address, serve

    overrides = _serve_overrides(args)
    settings = serve_settings(overrides)
    check_named_model(args.model)  # even beside a registry, which takes precedence: a wrong name is a typo
    check_listening_address(settings.host, settings.port)  # before a demo model is trained and "starting" said
    if settings.model_dir is None and settings.registry_dir is None:
        settings = serve_settings({**overrides, "model_dir": str(ensure_demo_model(_progress(_tell)))})
    # Human lines go to stdout: the service's stderr is its JSON-lines log (docs/settings.md).
    registry = settings.registry_dir
    if registry is not None and not Path(registry).is_dir():
        # Served all the same (a volume may be mounted later, a first publish may create it), but a typo
        # would otherwise only show as a 503 on the first request.
        _tell(f"dealscore serve: the model registry at {registry} does not exist (yet): the service stays not "
              "ready until a version is published there; check the path or the mount")
    else:
        _tell(try_it_line(settings.host, settings.port, settings.api_token is not None))
    serve(settings)
    return 0


def _serve_overrides(args: argparse.Namespace) -> dict[str, Any]:
    given = {"host": args.host, "port": args.port, "model_dir": args.model, "registry_dir": args.registry}
    for name in ("host", "model_dir", "registry_dir"):
        # An empty text here is an unset shell variable ("--model $MODEL"). The settings would read an empty
        # folder as "not set" and serve the demo model, and an empty host would listen on every interface.
        if given[name] is not None and not given[name].strip():
            expected = "an address to listen on" if name == "host" else "a folder"
            raise DealscoreError(f"{SERVE_OPTIONS[name]}: expected {expected}, got an empty text")
    if args.model is not None and args.registry is not None:
        # The registry would win and --model be ignored: both typed on one command line is a mistake to say.
        # (Between variables the precedence stays: the image sets DEALSCORE_MODEL_DIR to its demo model.)
        raise DealscoreError("--model and --registry: expected one of them (a registry serves its live version, "
                             f"a model folder one artifact), got both: {args.model} and {args.registry}")
    return {name: value for name, value in given.items() if value is not None}


def serve_settings(overrides: dict[str, Any]) -> Settings:
    """The service's Settings from the serve options and the DEALSCORE_* variables; a value they refuse is
    one line naming the option, or the variable, it came from."""
    from service.settings import settings_from

    return settings_from(overrides, SERVE_OPTIONS)


def check_named_model(model: str | None) -> None:
    """A model folder named on the command line must be an artifact now. The service itself would start,
    stay not ready and only log why, which suits a registry awaiting its first publish, not a typo."""
    from model.artifact import verify_artifact

    if model is None:
        return
    folder = Path(model)
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise DealscoreError(f"--model: expected a model artifact folder (dealscore train --out), got {model}, "
                             f"which {what}")
    try:
        verify_artifact(folder)
    except ArtifactError as exc:
        raise DealscoreError(f"--model: expected a model artifact folder (dealscore train --out), got {model}: "
                             f"{exc.message}") from None


def try_it_line(host: str, port: int, token: bool = False) -> str:
    """A ready-to-paste request for the demo model (a known demo client, a product of its catalogue); with
    `token`, the header DEALSCORE_API_TOKEN asks for, read from the environment (never printed)."""
    deal = ('{"deals": [{"deal_id": "D1", "client_id": "C00042", "created_at": "2025-12-01", "amount": 12000, '
            '"product": "credit_line", "effort_hours": 6, "source": "referral"}]}')
    bearer = ' -H "Authorization: Bearer $DEALSCORE_API_TOKEN"' if token else ""
    return (f"dealscore is starting on http://{host}:{port} (API docs at /docs). Once it is up, score a deal:\n"
            f"  curl -s http://{host}:{port}/v1/score -H 'content-type: application/json'{bearer} -d '{deal}'")


OUT_HELP = "CSV file to write (replaced if it exists; missing folders on the way are created)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dealscore", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo-data", help="write a synthetic CRM with its ground truth")
    demo.add_argument("--out", required=True, help="folder to write (deals.csv, clients.csv, holdings.csv, truth/)")
    demo.add_argument("--seed", type=at_least_zero, default=7, help="the draw (default 7, the demo model's)")
    demo.add_argument("--deals", type=at_least_one, default=20_000, help="deals drawn over 2021-2025 (default 20,000)")
    demo.add_argument("--until", type=as_of_day, default=None,
                      help="write the CRM as an export taken that day: later deals absent, deals closed later "
                           "open (exports of successive months try the monthly retrain)")
    demo.set_defaults(run=cmd_demo_data)

    train = commands.add_parser("train", help="fit and evaluate a model, write an artifact directory")
    add_data_options(train)
    train.add_argument("--out", required=True, help="artifact folder to write (written beside it, then renamed into "
                                                    "place: never half-written)")
    add_training_options(train, threads_default=1,
                         threads_help="native threads for fitting (default 1; more than 1 helps only on an idle "
                                      "machine)")
    train.set_defaults(run=cmd_train)

    score = commands.add_parser("score", help="score a file of deals offline")
    score.add_argument("--model", required=True, help=MODEL_HELP)
    add_data_options(score)
    score.add_argument("--out", required=True, help=OUT_HELP)
    score.set_defaults(run=cmd_score)

    sign = commands.add_parser("sign", help="sign a model artifact with DEALSCORE_ARTIFACT_KEY (for one you trust)")
    sign.add_argument("--model", required=True, help=MODEL_HELP)
    sign.set_defaults(run=cmd_sign)

    gaps = commands.add_parser("gaps", help="every client's cross-sell gap list")
    gaps.add_argument("--model", required=True, help=MODEL_HELP)
    gaps.add_argument("--clients", required=True, help=f"the clients table: {SOURCE}")
    gaps.add_argument("--holdings", help="what each client holds now; default: what the model knew at training "
                                         "(a client it does not know then holds nothing)")
    gaps.add_argument("--mapping", help=MAPPING_HELP)
    gaps.add_argument("--top", type=at_least_one, default=5, help="gaps listed per client (default 5)")
    gaps.add_argument("--as-of", type=as_of_day, default=None,
                      help="ISO date, at most today (tomorrow, a time zone ahead): tenure on that day, holdings held "
                           "by then; default: today")
    gaps.add_argument("--out", required=True, help=OUT_HELP)
    gaps.set_defaults(run=cmd_gaps)

    clients = commands.add_parser("clients", help="client analytics: status, RFM, ABC, XYZ, golden clients")
    add_data_options(clients)
    clients.add_argument("--as-of", type=as_of_day, default=None,
                         help="ISO date, at most today (tomorrow, a time zone ahead); default: the latest deal date")
    clients.add_argument("--model", default=None,
                         help="artifact whose ideal profiles give potential income (default: profiles fitted on "
                              "the files as of the day)")
    clients.add_argument("--lost-window-days", type=at_least_one, default=None,
                         help="days without a win after which a client is lost; default: the model's, else 360")
    clients.add_argument("--abc-shares", type=float, nargs=3, metavar=("A", "B", "C"), default=None,
                         help="shares of money won for ABC classes A, B and C, adding up to 1 (default 0.8 0.15 0.05)")
    clients.add_argument("--xyz-shares", type=float, nargs=2, metavar=("X", "Y"), default=None,
                         help="share of the last 12 months with a purchase from which a client is X, and Y "
                              "(default 0.5 0.2)")
    clients.add_argument("--out", required=True, help=OUT_HELP)
    clients.set_defaults(run=cmd_clients)

    serve = commands.add_parser("serve", help="run the HTTP service (trains the demo model when none is given)")
    serve.add_argument("--model", help="artifact folder to serve (checked before the service starts)")
    serve.add_argument("--registry", help="registry folder; the service serves its live version once there is one")
    serve.add_argument("--host", help="address to listen on (default: DEALSCORE_HOST, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: DEALSCORE_PORT, else 8000)")
    serve.set_defaults(run=cmd_serve)
    add_registry_commands(commands)
    add_feedback_commands(commands)
    return parser


class Interrupted(KeyboardInterrupt):
    """A SIGTERM, raised in the main thread as Ctrl-C is: every `finally:` and `with` of the command runs (the
    registry lock, training's thread pool, the staging folders of atomic writes), as it does on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    # Once: a repeated SIGTERM must not break off the cleanup the first one started (SIGKILL still ends it).
    signal.signal(signum, signal.SIG_IGN)
    raise Interrupted(signum)


@contextlib.contextmanager
def _sigterm_interrupts(command: str) -> Iterator[None]:
    """SIGTERM ends the command as Ctrl-C does, except `serve`: uvicorn shuts down gracefully on it."""
    if command == "serve" or threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    before = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _interrupted(command: str, exc: KeyboardInterrupt) -> int:
    signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
    # Artifacts, output files and registry changes are written aside and renamed into place (model/artifact.py,
    # dealscore/outputs.py, model/registry.py): an interrupted write leaves the old state. Schema migrations
    # on SQLite are not one transaction, so `db` makes no such claim.
    left = "" if command == "db" else ", nothing half-written is left"
    _say(f"dealscore {command}: interrupted by {signal.Signals(signum).name}; stopped before finishing{left}")
    return EXIT_SIGNAL_BASE + signum


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (`| head` that had its lines), not another broken pipe."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object with no descriptor: not a pipe
        return False
    if not hasattr(select, "poll"):
        return True  # no way to ask; stdout is by far the likeliest pipe a command writes to
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def _end_quietly_on_closed_stdout(finished_with: int | None) -> int:
    # The Python docs' recipe for SIGPIPE: the interpreter flushes stdout once more on exit, and what is left
    # in its buffer would raise again; devnull takes it. 141, not 0: the output was cut short, as a shell
    # reports for any Unix tool in `... | head` (and `set -o pipefail` scripts see it so); not 1, the
    # status of an unexpected failure that pages someone (docs/operations.md). A command that had finished
    # with a status of its own (retrain's 3: not published) keeps it: only its last output was lost.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return finished_with or EXIT_STDOUT_CLOSED


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int | None = None
    with _sigterm_interrupts(args.command):
        try:
            code = int(args.run(args))
            sys.stdout.flush()  # now, not at exit: a reader that stopped early is one of the cases below
            return code
        except DealscoreError as exc:
            _say(f"dealscore {args.command}: {exc.report()}")
            return EXIT_RETRY if exc.transient else EXIT_INPUT
        except KeyboardInterrupt as exc:
            return _interrupted(args.command, exc)
        except OSError as exc:
            if not disk_full(exc):
                return _unexpected(args.command, exc, code)
            # A full disk is the machine's state, not the input's nor a bug: retried later like a database that
            # is away. Every write goes aside first, then is renamed: nothing half-written. (ENOSPC may also be a
            # system limit, such as inotify's: the wording leaves room for it.)
            where = f" writing {exc.filename}" if exc.filename else ""
            _say(f"dealscore {args.command}: no space left{where} ({exc.strerror}: the disk full, or a system "
                 "limit reached); nothing half-written is left (outputs, artifacts and registry changes are "
                 "written aside, then renamed into place): free space and run it again")
            return EXIT_RETRY
        except Exception as exc:  # the last line of defence: one line, no traceback, unless debugging
            return _unexpected(args.command, exc, code)


def _unexpected(command: str, exc: Exception, code: int | None) -> int:
    if isinstance(exc, BrokenPipeError) and _stdout_closed():
        return _end_quietly_on_closed_stdout(code)
    if os.environ.get("DEALSCORE_DEBUG"):
        raise exc
    _say(f"dealscore {command}: unexpected failure: {type(exc).__name__}: {exc} "
         "(set DEALSCORE_DEBUG=1 for the traceback)")
    return EXIT_FAILURE
