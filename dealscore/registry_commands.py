"""`dealscore retrain` and `dealscore models ...`: the monthly retrain with its publish gate, and the registry.

Exit status: 0 done (published, or the registry command succeeded), 3 the retrain gate refused the
candidate (the live model stays; the reason is on stderr and in the report), 2 bad input or artifact
(DealscoreError, mapped by dealscore.cli.main), 1 unexpected failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dealscore.arguments import add_data_options, add_training_options, at_least_one, grade_shares, refused_options
from model.errors import ArtifactError, DealscoreError, NotFound
from model.terminal import terminal_cell, terminal_text

if TYPE_CHECKING:  # imported lazily at run time, so `dealscore --help` stays fast
    from model.registry import Event, Registry

EXIT_REFUSED = 3  # the retrain gate kept the live model; distinct from errors so a scheduler can tell them apart
REGISTRY_ENV = "DEALSCORE_REGISTRY_DIR"  # the same variable the service reads
REASON_HELP = "why, recorded in the registry's history (`dealscore models history`)"


def grade_summary(meta: Mapping[str, Any]) -> str:
    """One line on a model's letter-class cut-offs, or why it has none (no positive expected value)."""
    cut = meta.get("grade_cutoffs", {})
    floor = cut.get("d_floor_value_per_hour")
    below = f", D at or below {floor:,.0f} per hour" if floor is not None else ""
    if cut.get("a_min_expected_value", 0) > 0:
        if floor is None and "effort_hours" in meta.get("features", ()):
            # The deals carry hours, yet no class D: said, not left to a reader to notice that no deal is ever D.
            below = (", no class D (no closed deal with effort_hours above 0 and a won amount to set its floor "
                     "from; --d-floor-per-hour sets one)")
        return f"grade A from EV {cut['a_min_expected_value']:,.0f}, B from {cut['b_min_expected_value']:,.0f}{below}"
    value = meta.get("value", {})  # recorded since 2026-12 (older models lack it)
    facts = (f" ({value['closed_deals_with_amount']:,} closed deals with an amount above 0, "
             f"{value['won_deals_with_amount']:,} of them won; a value model needs "
             f"{value['value_model_needs_won_deals']})" if value and not value["value_model"] else "")
    return (f"grades: no reference deal has an expected value above 0{facts}, so there are no cut-offs and every "
            f"deal is C, with or without an amount{below}; map an amount column to grade deals by value")


def _out(text: str = "") -> None:
    sys.stdout.write(terminal_text(text) + "\n")  # reasons and notes others wrote: shown, never acted on


def _say(text: str) -> None:
    sys.stderr.write(terminal_text(text) + "\n")
    sys.stderr.flush()


def _progress() -> Callable[[str], None]:
    started = time.perf_counter()
    return lambda step: _say(f"[{time.perf_counter() - started:6.1f}s] {step}")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned, text left-aligned; the last column free."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(_is_number(r[i]) for r in cells if r[i]) and any(r[i] for r in cells)
               for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        if not numeric[-1]:
            parts[-1] = values[-1]  # no trailing padding
        return "  ".join(parts).rstrip()

    rule = ["-" * w for w in widths]
    if not numeric[-1]:
        rule[-1] = "-" * min(widths[-1], max(len(headers[-1]), 20))  # a long free-text column: a short rule
    return "\n".join([line(list(headers)), line(rule), *(line(r) for r in cells)])


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:
            return "n/a"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return terminal_cell(str(value))  # a reason, a note, a version: one line each, never acted on


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return text == "n/a"
    return True


def _registry(args: argparse.Namespace, must_exist: bool = True) -> Registry:
    from model.registry import Registry

    if not args.registry:
        raise DealscoreError(f"no registry given: pass --registry DIR or set {REGISTRY_ENV}")
    registry = Registry(args.registry, on_wait=lambda message: _say(f"dealscore: {message}"))
    if not registry.exists():
        problem = registry.missing_manifest_problem()
        if problem is not None:  # version folders without their manifest, or another kind of folder
            raise ArtifactError(problem)
        if must_exist:
            raise NotFound(f"no model registry at {args.registry} (no manifest.json); `dealscore retrain` or "
                           "`dealscore models add` creates one")
    return registry


# -- retrain ------------------------------------------------------------------------------------------


def cmd_retrain(args: argparse.Namespace) -> int:
    from model.artifact import signing_key
    from model.dataset import load_dataset
    from model.features import FeatureConfig
    from training.fit import TrainConfig
    from training.retrain import RetrainConfig, retrain

    signing_key()  # a key too short to sign with ended the run only when its candidate was stored
    registry = _registry(args, must_exist=False)
    # Validation comes first: bad options, then bad data, end here (exit 2) before any training, with the
    # registry untouched.
    with refused_options():
        features = FeatureConfig(include_manager=args.include_manager, exclude=tuple(args.exclude or ()),
                                 lost_window_days=args.lost_window_days, history_lag_days=args.history_lag_days)
        train_config = TrainConfig(holdout_share=args.holdout_share, features=features,
                                   keep_columns=tuple(args.keep or ()), d_floor_per_hour=args.d_floor_per_hour,
                                   grade_shares=grade_shares(args.grade_shares))
        if args.threads is not None:
            train_config = dataclasses.replace(train_config, threads=args.threads)
        if args.parallel_fits is not None:
            train_config = dataclasses.replace(train_config, parallel_fits=args.parallel_fits)
        gate = RetrainConfig(auc_tolerance=args.auc_tolerance, ece_limit=args.ece_limit, ece_margin=args.ece_margin,
                             min_comparison_deals=args.min_comparison_deals, keep_last=args.keep_last)
    say = _progress()
    if not registry.exists():
        # Said on stderr, where a cron log keeps it: a mistyped path or a volume that is not mounted looks the same.
        _say(f"dealscore retrain: no model registry at {registry.root} yet: creating one, and its first model is "
             "published without a gate (if a registry should be there, check the path or the mount)")
    # Before minutes of training: a registry this job cannot write to (a read-only mount, a wrong owner) was
    # found only when the candidate was stored, and the gate's decision was lost with the run.
    try:
        with registry.locked():
            pass
    except OSError as exc:
        raise DealscoreError(f"model registry at {registry.root} cannot be written: {exc.strerror or exc} "
                             f"({exc.filename or registry.root}); the retrain job needs write access") from exc
    say("reading and validating the data")
    dataset = load_dataset(args.deals, args.clients, args.holdings, args.mapping, for_training=True)
    outcome = retrain(registry, dataset, train_config, gate, force=args.force, progress=say, note=args.note or "")
    _out(retrain_summary(outcome.report, outcome.version, outcome.live_before))
    _out(f"report: {outcome.report_path}")
    if not outcome.published:
        _say(f"dealscore retrain: not published, {outcome.live_before} stays live: {outcome.reason}")
        return EXIT_REFUSED
    return 0


def retrain_summary(report: Mapping[str, Any], version: str, live: str | None) -> str:
    """The decision, the metrics side by side, letter changes and the largest input drift, for a terminal."""
    decision = report["decision"]
    comparison = report["comparison"]
    lines = [f"candidate {version}" + (f" vs live {live}" if live else " (no live model yet)")]
    metrics = report.get("metrics")
    if metrics:
        share = comparison.get("live_fitted_share")
        fitted = ((f"candidate's holdout; the live model was fitted on {share:.0%} of them" if share is not None
                   else "candidate's holdout; the live model was fitted on part of it") if comparison["live_in_sample"]
                  else "neither model was fitted on them")
        lines.append(f"compared on {comparison['closed_deals']:,} closed deals created {comparison['from']} to "
                     f"{comparison['to']} ({fitted})")
        checks = {c["name"]: c for c in decision["checks"]}
        rows = []
        for name, label in (("auc", "AUC"), ("ece", "ECE"), ("brier", "Brier"), ("log_loss", "log loss"),
                            ("top_decile_lift", "lift@10%"), ("mean_p", "mean p_win"), ("win_rate", "win rate")):
            check = checks.get(name)
            rows.append([label, metrics["live"].get(name), metrics["candidate"].get(name),
                         f"{check['rule']} ({check['threshold']:.3f})" if check else "",
                         ("yes" if check["passed"] else "NO") if check else ""])
        outcomes = checks.get("outcomes")
        if outcomes:  # the live model's ranking of the compared outcomes (training.retrain.outcomes_against_live)
            rows.append(["outcomes", outcomes["live"], None, f"{outcomes['rule']} ({outcomes['threshold']:.3f})",
                         "yes" if outcomes["passed"] else "NO"])
        gate = comparison.get("gate_model", {})
        lines += ["", format_table(["metric", "live", "candidate", "rule", "passed"], rows),
                  f"(candidate: the candidate's recipe fitted on the {gate.get('deals', 0):,} deals created before "
                  f"{comparison['from']}, blind to the compared deals like the live model)", ""]
        for key, what in (("grade_shift", "comparison deals"), ("grade_shift_open_deals", "open deals")):
            shift = report.get(key)
            if shift:
                lines.append(f"letter changes: {shift['changed']:,} of {shift['deals']:,} {what}")
    training = report["candidate"].get("training_holdout_metrics")
    if not metrics and training:
        lines.append(f"candidate on its own time-ordered holdout: AUC {_cell(training.get('auc'))}, "
                     f"ECE {_cell(training.get('ece'))}, Brier {_cell(training.get('brier'))} "
                     f"on {_cell(training.get('deals'))} deals")
    drift = report.get("drift", {})
    moved = [f"{r['feature']} {r['psi']:.2f}" for r in drift.get("features", [])
             if r.get("source") == "input" and r.get("psi") is not None and r["psi"] >= 0.1]
    if drift:
        p_win = drift["p_win"]
        lines.append(f"drift: p_win PSI {_cell(p_win['psi'])} ({p_win['level']}); input columns at PSI >= 0.1: "
                     + (", ".join(moved) if moved else "none"))
    verdict = ("PUBLISHED" + (" (forced)" if decision["forced"] else "")) if decision["published"] else "NOT PUBLISHED"
    lines.append(f"{verdict}: {decision['reason']}")
    return "\n".join(lines)


# -- models ---------------------------------------------------------------------------------------------


def _metrics_of(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    metrics = meta.get("metrics")
    model = metrics.get("model") if isinstance(metrics, Mapping) else None
    # A metric that could not be computed is null in metadata.json (strict JSON): shown as "n/a", like NaN.
    return {k: float("nan") if v is None else v for k, v in model.items()} if isinstance(model, Mapping) else {}


def version_status(registry: Registry, version: str) -> str:
    """live, previous (where a rollback goes), rolled back, retired (was live), refused (by the gate), stored."""
    if version == registry.live_version():
        return "live"
    if version == registry.previous_version():
        return "previous"
    status = "stored"
    for event in registry.history():
        if event.version == version and event.action == "publish":
            status = "retired"
        elif event.version == version and event.action == "refused":
            status = "refused"
        elif event.previous == version and event.action == "rollback":
            status = "rolled back"
    return status


def cmd_models_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    rows = []
    for entry in reversed(registry.entries()):
        try:
            meta = registry.metadata(entry.version)
        except DealscoreError:
            rows.append([entry.version, "unreadable", "", "", "", "", None, None, entry.added_at[:16]])
            continue
        data = meta.get("data", {})
        metrics = _metrics_of(meta)
        # A folder holding another version (renamed or swapped by hand) listed that one's figures under this name.
        status = (version_status(registry, entry.version) if meta.get("version") == entry.version
                  else f"holds {meta.get('version')!s:.40}")
        rows.append([entry.version, status, str(meta.get("trained_at", ""))[:16],
                     f"{data.get('first_deal', '?')}..{data.get('last_deal', '?')}",
                     f"{data.get('closed_deals', 0):,}", meta.get("engine", ""), metrics.get("auc"),
                     metrics.get("ece"), entry.added_at[:16]])
    if not rows:
        _out(f"no versions in {registry.root} yet")
        return 0
    _out(format_table(["version", "status", "trained", "data", "closed", "engine", "auc", "ece", "added"], rows))
    stored = {entry.version for entry in registry.entries()}
    live, previous = registry.live_version(), registry.previous_version()
    # Said as they are: a rollback to a pruned version is refused, and a live version the registry does not hold
    # (a manifest edited by hand) serves nothing.
    live_said = ("none" if live is None else live if live in stored
                 else f"{live} (NOT STORED: the manifest names a version the registry does not hold; the service "
                      "cannot load it)")
    rollback_said = ("nothing" if previous is None else previous if previous in stored
                     else f"nothing: {previous}, live before, is no longer stored (publish a stored version instead)")
    _out(f"\nauc, ece: the training report's time-ordered holdout. live: {live_said}; "
         f"rollback would return to: {rollback_said}")
    return 0


def _resolve(registry: Registry, version: str) -> str:
    if version == "live":
        live = registry.live_version()
        if live is None:
            raise NotFound(f"no version is live in {registry.root}")
        return live
    if version == "previous":
        previous = registry.previous_version()
        if previous is None:
            raise NotFound(f"no previous live version in {registry.root}")
        return previous
    return version


def cmd_models_show(args: argparse.Namespace) -> int:
    registry = _registry(args)
    version = _resolve(registry, args.version)
    meta = registry.metadata(version)
    try:
        registry.verify(version)
        integrity = "checksums and library versions verified"
    except DealscoreError as exc:
        integrity = f"REFUSED: {exc.message}"
    data = meta.get("data", {})
    metrics = _metrics_of(meta)
    libraries = meta.get("libraries", {})
    rows = [
        ["version", f"{version} ({version_status(registry, version)})"],
        ["trained at", meta.get("trained_at", "?")],
        ["data", f"{data.get('first_deal', '?')} to {data.get('last_deal', '?')}: {data.get('deals', 0):,} deals, "
                 f"{data.get('closed_deals', 0):,} closed ({data.get('won', 0):,} won), "
                 f"{data.get('open_deals', 0):,} open"],
        ["engine", f"{meta.get('engine', '?')}{' (small-data mode)' if meta.get('small_data') else ''}"],
        ["holdout", "  ".join(f"{k} {_cell(metrics.get(k))}" for k in ("auc", "brier", "ece", "top_decile_lift"))
         + f"  on {metrics.get('deals', '?')} deals"],
        ["grades", grade_summary(meta).removeprefix("grade ").removeprefix("grades: ")],
        ["features", f"{len(meta.get('features', []))} ({len(meta.get('categorical_features', []))} categorical)"],
        ["libraries", ", ".join(f"{k} {v}" for k, v in sorted(libraries.items()))],
        ["integrity", integrity],
        ["folder", str(registry.path_of(version))],
    ]
    gate = gate_decision(registry, version)
    if gate is not None:
        rows.append(["gate", gate[1]])
    width = max(len(label) for label, _ in rows)
    _out("\n".join(f"{label:<{width}}  {value}" for label, value in rows))
    events = [e for e in registry.history() if version in (e.version, e.previous) and e.action != "prune"]
    if events:
        _out("\n" + _history_table(events))
    return 0


def gate_decision(registry: Registry, version: str) -> tuple[bool | None, str] | None:
    """The retrain gate's verdict on a version (published?, reason), None when no retrain judged it.

    How a damaged version is inspected: an unreadable report is a reason that says so, not a crash."""
    comparison = registry.path_of(version) / "comparison.json"
    if not comparison.is_file():
        return None
    try:
        report = json.loads(comparison.read_text())
    except (OSError, ValueError) as exc:
        return None, f"comparison.json is unreadable ({type(exc).__name__}: {exc})"
    decision = report.get("decision") if isinstance(report, dict) else None
    if not isinstance(decision, dict):
        return None, "?"
    published = decision.get("published")
    return (published if isinstance(published, bool) else None), str(decision.get("reason", "?"))


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


DIFF_ROWS = (
    ("trained at", "trained_at"), ("first deal", "data.first_deal"), ("last deal", "data.last_deal"),
    ("deals", "data.deals"), ("closed deals", "data.closed_deals"), ("won", "data.won"), ("engine", "engine"),
    ("holdout auc", "metrics.model.auc"), ("holdout brier", "metrics.model.brier"),
    ("holdout ece", "metrics.model.ece"), ("holdout lift@10%", "metrics.model.top_decile_lift"),
    ("holdout deals", "metrics.model.deals"), ("A from EV", "grade_cutoffs.a_min_expected_value"),
    ("B from EV", "grade_cutoffs.b_min_expected_value"),
    ("D at or below EV/hour", "grade_cutoffs.d_floor_value_per_hour"),
)


def _diff_cell(flat: Mapping[str, Any], path: str) -> str:
    # Present but null (a metric that could not be computed, strict JSON) reads "n/a"; absent stays blank.
    return "n/a" if path in flat and flat[path] is None else _cell(flat.get(path))


def cmd_models_diff(args: argparse.Namespace) -> int:
    registry = _registry(args)
    first, second = _resolve(registry, args.first), _resolve(registry, args.second)
    a, b = registry.metadata(first), registry.metadata(second)
    flat_a, flat_b = _flatten(a), _flatten(b)
    rows = []
    for label, path in DIFF_ROWS:
        left, right = flat_a.get(path), flat_b.get(path)
        rows.append([label, _diff_cell(flat_a, path), _diff_cell(flat_b, path), "" if left == right else "*"])
    _out(format_table(["", first, second, "differs"], rows))
    only_a = [f for f in a.get("features", []) if f not in b.get("features", [])]
    only_b = [f for f in b.get("features", []) if f not in a.get("features", [])]
    _out(f"\nfeatures only in {first}: {', '.join(only_a) or 'none'}")
    _out(f"features only in {second}: {', '.join(only_b) or 'none'}")
    for section in ("libraries", "training.config"):
        keys = sorted(k for k in set(flat_a) | set(flat_b) if k.startswith(section + "."))
        changed = [[k.removeprefix(section + "."), _cell(flat_a.get(k)), _cell(flat_b.get(k))]
                   for k in keys if flat_a.get(k) != flat_b.get(k)]
        if changed:
            _out(f"\n{section} differences:\n" + format_table(["setting", first, second], changed))
        else:
            _out(f"{section}: the same")
    return 0


def cmd_models_publish(args: argparse.Namespace) -> int:
    registry = _registry(args)
    event = registry.publish(args.version, args.reason or "published by hand (dealscore models publish)",
                             forced=True)
    if event is None:
        _out(f"{args.version} is already live; nothing changed")
    else:
        _out(f"{args.version} is live (was {event.previous or 'none'}); a running service picks it up on its "
             "next registry check or on POST /v1/admin/reload")
        gate = gate_decision(registry, args.version)
        if gate is not None and gate[0] is False:
            # Publishing by hand is the way past the gate, and allowed; the operator should still know.
            _say(f"note: the retrain gate had refused {args.version}: {gate[1]}")
    return 0


def cmd_models_rollback(args: argparse.Namespace) -> int:
    registry = _registry(args)
    event = registry.rollback(args.reason or "rolled back by hand (dealscore models rollback)")
    _out(f"rolled back: {event.version} is live again (was {event.previous})")
    return 0


def _history_table(events: Sequence[Event]) -> str:
    rows = [[e.at[:19].replace("T", " "), e.action, e.version or "", e.previous or "", "yes" if e.forced else "",
             e.by, e.reason + (f" [{', '.join(e.removed)}]" if e.removed else "")] for e in events]
    return format_table(["at (UTC)", "action", "version", "from", "forced", "by", "reason"], rows)


def cmd_models_history(args: argparse.Namespace) -> int:
    registry = _registry(args)
    events = registry.history()
    if args.last is not None:
        events = events[-args.last:]
    _out(_history_table(events) if events else "no history yet")
    return 0


def cmd_models_add(args: argparse.Namespace) -> int:
    registry = _registry(args, must_exist=False)
    version = registry.add_artifact(Path(args.artifact), reason=args.reason or f"added from {args.artifact}")
    _out(f"added {version} (not live; `dealscore models publish {version} --registry {registry.root}` makes it "
         "live)")
    return 0


def cmd_models_sign(args: argparse.Namespace) -> int:
    """Sign stored versions with DEALSCORE_ARTIFACT_KEY (all of them, or those named): what an operator runs once
    when turning signing on for a registry whose versions it trusts."""
    from model.artifact import sign_artifact

    registry = _registry(args)
    with registry.locked():  # not while a prune removes one
        stored = registry.versions()
        unknown = [v for v in args.versions if v not in stored]
        if unknown:
            raise NotFound(f"no version {', '.join(unknown)} in the model registry at {registry.root}")
        for version in args.versions or stored:
            signed = sign_artifact(registry.path_of(version))
            _out(f"{version}: {'signed' if signed else 'already signed with this key'}")
    return 0


def cmd_models_prune(args: argparse.Namespace) -> int:
    registry = _registry(args)
    removed = registry.prune(args.keep_last)
    _out(f"removed {len(removed)} version(s): {', '.join(removed)}" if removed else "nothing to remove")
    return 0


# -- wiring ---------------------------------------------------------------------------------------------


def _registry_option(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get(REGISTRY_ENV)
    # Not required by argparse: _registry refuses a missing one and names the variable that can stand in.
    parser.add_argument("--registry", default=default, help=f"registry directory (default: ${REGISTRY_ENV})")


def add_registry_commands(commands: Any) -> None:
    """Add `retrain` and `models` to the CLI's subparsers (the object add_subparsers returned)."""
    retrain = commands.add_parser("retrain", help="train a candidate, gate it against the live model, publish it",
                                  description="Exit 0 published, 3 refused by the gate (live model kept), 4 try "
                                              "again later (registry lock held, live version changed meanwhile, "
                                              "database source away, disk full), 2 bad input "
                                              "(docs/operations.md, Exit status).")
    _registry_option(retrain)
    add_data_options(retrain)
    retrain.add_argument("--force", action="store_true", help="publish even if the gate refuses (recorded)")
    retrain.add_argument("--note", help="recorded with the decision, e.g. why --force was used")
    gate = retrain.add_argument_group("publish gate")
    gate.add_argument("--auc-tolerance", type=float, default=0.01,
                      help="candidate AUC >= live AUC - this (default 0.01)")
    gate.add_argument("--ece-limit", type=float, default=0.03,
                      help="candidate calibration error ceiling (default 0.03)")
    gate.add_argument("--ece-margin", type=float, default=0.005, help="... or at most live ECE + this (default 0.005)")
    gate.add_argument("--min-comparison-deals", type=at_least_one, default=200,
                      help="closed deals after the live model's data needed to compare on them (default 200)")
    gate.add_argument("--keep-last", type=at_least_one, default=12,
                      help="versions kept (default 12; live and previous always)")
    training = retrain.add_argument_group("training (as for `dealscore train`)")
    add_training_options(training, threads_default=None,
                         threads_help="LightGBM threads (1 on a busy or small machine: OpenMP threads that share "
                                      "cores slow fitting down many times over)")
    retrain.set_defaults(run=cmd_retrain)

    models = commands.add_parser("models", help="list, show, diff, publish, roll back, add, prune and sign "
                                                  "registry versions")
    actions = models.add_subparsers(dest="models_command", required=True)
    listing = actions.add_parser("list", help="every stored version, newest first")
    listing.set_defaults(run=cmd_models_list)
    show = actions.add_parser("show", help="one version in detail (V, 'live' or 'previous')")
    show.add_argument("version")
    show.set_defaults(run=cmd_models_show)
    diff = actions.add_parser("diff", help="two versions side by side")
    diff.add_argument("first")
    diff.add_argument("second")
    diff.set_defaults(run=cmd_models_diff)
    publish = actions.add_parser("publish", help="make a stored version live (bypasses the gate; recorded)")
    publish.add_argument("version")
    publish.add_argument("--reason", help=REASON_HELP)
    publish.set_defaults(run=cmd_models_publish)
    rollback = actions.add_parser("rollback", help="return to the previous live version")
    rollback.add_argument("--reason", help=REASON_HELP)
    rollback.set_defaults(run=cmd_models_rollback)
    history = actions.add_parser("history", help="publishes, rollbacks, refusals and prunes")
    history.add_argument("--last", type=at_least_one, default=None, help="only the last N events (default: all)")
    history.set_defaults(run=cmd_models_history)
    add = actions.add_parser("add", help="store an artifact directory from `dealscore train --out` (not live)")
    add.add_argument("artifact")
    add.add_argument("--reason", help=REASON_HELP)
    add.set_defaults(run=cmd_models_add)
    prune = actions.add_parser("prune", help="drop old versions (never the live or the previous one)")
    prune.add_argument("--keep-last", type=at_least_one, required=True,
                       help="the N latest versions added are kept, and the live and previous live ones always")
    prune.set_defaults(run=cmd_models_prune)
    sign = actions.add_parser("sign", help="sign stored versions with DEALSCORE_ARTIFACT_KEY (default: all)")
    sign.add_argument("versions", nargs="*", metavar="VERSION", help="versions to sign (default: every stored one)")
    sign.set_defaults(run=cmd_models_sign)
    for sub in (listing, show, diff, publish, rollback, history, add, prune, sign):
        _registry_option(sub)
