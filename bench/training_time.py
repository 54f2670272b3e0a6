"""Training time (issue 4): synthetic CRMs of 100k and 1M deals, generated, validated and trained with evaluation.

    python -m bench training_time
    python -m bench training_time -- --deals 100000 --profile   # cProfile of train(), top functions

Each size: generate(seed, n) (not part of the goal), dataset_from_frames (the validation a real input
goes through), then the full train() with its default config (one native thread per LightGBM fit, as
`dealscore train` and `retrain` pass by default, --threads 2 on an idle machine; independent fits side by
side on the CPUs / --threads Python threads, at most 4, --parallel-fits 1 for one after the other; time-ordered
holdout, baselines, published model, value model, grade cut-offs, client profiles and their evaluation).
Goal: train() on 1M deals in at most 3 minutes on 2 cores, growing roughly linearly (s per 100k deals at
1M within 1.5x of 100k's).
The cores may be shared: the load average before and after each size is printed with it.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
from dataclasses import dataclass

from bench.tables import format_table
from model.dataset import dataset_from_frames
from training.fit import TrainConfig, train
from training.fit_pool import default_workers
from training.synthetic_crm import generate

SEED = 3
SIZES = (100_000, 1_000_000)
GOAL_SECONDS_1M = 180.0
LINEAR_TOLERANCE = 1.5  # per-100k time at the largest size over the smallest's


def load_average() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:  # not on every platform
        return "-"


@dataclass(frozen=True)
class Timing:
    deals: int
    generate_s: float
    validate_s: float
    train_s: float
    rounds: object
    load: str  # load average before / after
    steps: dict[str, float]  # train()'s own steps (from its progress messages) -> seconds

    @property
    def per_100k_s(self) -> float:
        return self.train_s / (self.deals / 100_000)

    def row(self) -> tuple[object, ...]:
        return (self.deals, self.generate_s, self.validate_s, self.train_s, self.per_100k_s, self.rounds, self.load)


# train()'s progress messages, by how they start, and the step each one opens. Client profiles and the
# baselines are fitted alongside the win models (TrainConfig.parallel_fits), so their time shows only as
# the wait for them, if any, after the grades.
STEPS = {"checking": "leak guard + level codes", "no level codes": "leak guard + level codes",
         "building": "as-of features", "fitting the evaluation": "evaluation fits",
         "fitting ideal": "evaluation fits", "fitting the published": "published fit + value model",
         "fixing": "grades + report", "waiting": "wait for profiles + baselines", "done": "done"}


def step_name(message: str) -> str:
    return next((name for start, name in STEPS.items() if message.startswith(start)), message)


def measure(n_deals: int, config: TrainConfig, profile: bool) -> tuple[Timing, str]:
    load_before = load_average()
    started = time.perf_counter()
    crm = generate(seed=SEED, n_deals=n_deals)
    generated = time.perf_counter()
    dataset = dataset_from_frames(crm.deals, crm.clients, crm.holdings, for_training=True)
    loaded = time.perf_counter()
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    marks: list[tuple[str, float]] = [("sort + join", loaded)]
    result = train(dataset, config, progress=lambda message: marks.append((step_name(message), time.perf_counter())))
    if profiler is not None:
        profiler.disable()
    trained = time.perf_counter()
    steps: dict[str, float] = {}
    for (name, start), (_, end) in zip(marks, marks[1:], strict=False):
        steps[name] = steps.get(name, 0.0) + end - start
    timing = Timing(n_deals, generated - started, loaded - generated, trained - loaded,
                    result.report["split"].get("rounds", "-"), f"{load_before} / {load_average()}", steps)
    stats = ""
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        stats = f"cProfile of train() on {n_deals:,} deals (cumulative):\n{out.getvalue()}"
    return timing, stats


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.training_time", description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, nargs="+", default=list(SIZES), help="sizes to time")
    parser.add_argument("--threads", type=int, default=TrainConfig().threads, help="LightGBM threads")
    parser.add_argument("--parallel-fits", type=int, default=TrainConfig().parallel_fits,
                        help="independent fits at once (default: the CPUs this process may use / --threads, at most 4)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of train() for each size")
    args = parser.parse_args()
    config = TrainConfig(threads=args.threads, parallel_fits=args.parallel_fits)
    timings: list[Timing] = []
    profiles: list[str] = []
    for n_deals in args.deals:
        timing, stats = measure(n_deals, config, args.profile)
        timings.append(timing)
        if stats:
            profiles.append(stats)
    workers = args.parallel_fits or default_workers(args.threads)
    notes = [f"seed {SEED}; TrainConfig(threads={args.threads}, parallel_fits={args.parallel_fits}): {workers} "
             f"fits at once; {os.cpu_count()} CPUs; "
             f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}"]
    by_size = {t.deals: t for t in timings}
    if 1_000_000 in by_size:
        train_1m = by_size[1_000_000].train_s
        notes.append(f"goal: train() on 1M deals <= {GOAL_SECONDS_1M:.0f} s: {train_1m:.0f} s, "
                     f"{'met' if train_1m <= GOAL_SECONDS_1M else 'MISSED'}")
    largest, smallest = by_size[max(by_size)], by_size[min(by_size)]
    if largest is not smallest:
        growth = largest.per_100k_s / smallest.per_100k_s
        notes.append(f"goal: roughly linear (s per 100k at {largest.deals:,} within {LINEAR_TOLERANCE}x of "
                     f"{smallest.deals:,}'s): {growth:.2f}x, {'met' if growth <= LINEAR_TOLERANCE else 'MISSED'}")
    print(format_table("Training time on the synthetic CRM (generate, validate, full train() with evaluation)",
                       ("deals", "generate s", "validate s", "train s", "train s per 100k deals", "rounds",
                        "load avg before / after"), [t.row() for t in timings], notes))
    names = list(dict.fromkeys(name for t in timings for name in t.steps))
    print()
    print(format_table("Where train() spends its time (s, from its progress steps)", ("deals", *names),
                       [(t.deals, *(t.steps.get(name, float("nan")) for name in names)) for t in timings]))
    for stats in profiles:
        print()
        print(stats)


if __name__ == "__main__":
    main()
