"""`dealscore <command> --help` says what every option is for: an ops user reads it before the docs."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from dealscore.cli import build_parser


def _commands(parser: argparse.ArgumentParser,
              prefix: str = "dealscore") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{prefix} {name}")


def test_every_option_of_every_command_has_help() -> None:
    # --model, --clients, --holdings, --out, --holdout-share, --lost-window-days, --d-floor-per-hour, --host and
    # --port printed their names only.
    missing = [f"{command} {'/'.join(action.option_strings)}"
               for command, parser in _commands(build_parser()) for action in parser._actions
               if action.option_strings and not action.help]
    assert not missing, missing


def test_train_and_retrain_take_the_same_data_and_training_options() -> None:
    commands = dict(_commands(build_parser()))

    def options(command: str) -> dict[str, tuple[object, str | None]]:
        return {o: (a.default, a.help) for a in commands[command]._actions for o in a.option_strings}

    train, retrain = options("dealscore train"), options("dealscore retrain")
    shared = set(train) & set(retrain) - {"-h", "--help", "--threads"}
    assert {"--deals", "--clients", "--holdings", "--mapping", "--holdout-share", "--lost-window-days",
            "--d-floor-per-hour", "--grade-shares", "--exclude", "--keep", "--parallel-fits"} <= shared
    assert all(train[o] == retrain[o] for o in shared), [o for o in shared if train[o] != retrain[o]]


def test_every_option_with_a_default_says_it() -> None:
    # gaps --top, the retrain gate's limits, --history-lag-days and quality --top did not: an operator read
    # docs/operations.md to learn that --keep-last keeps 12, or that training lags histories by 365 days.
    silent = [f"{command} {'/'.join(action.option_strings)} (default {action.default!r})"
              for command, parser in _commands(build_parser()) for action in parser._actions
              if action.option_strings and not action.required
              and action.default not in (None, False, argparse.SUPPRESS) and "default" not in (action.help or "")]
    assert not silent, silent
