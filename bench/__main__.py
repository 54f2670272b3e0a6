"""Run the benchmarks: every module in bench/ with a top-level main(), each printing its own table.

    python -m bench                                  # all of them, in name order
    python -m bench training_quality training_time   # only these
    python -m bench serving_bench -- --seconds 2     # one, with its own options after "--"

A module counts as a benchmark when it defines `def main(` at top level (read from its source, so
helper and server modules are never imported just to look). Each main() runs with a clean argv (its
options, or none), one after the other, never in parallel: they share the machine's cores. A failing
benchmark is reported and the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import ast
import importlib
import sys
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def benchmark_names() -> list[str]:
    """Modules of bench/ that define a top-level main(), by name."""
    names = []
    for path in sorted(BENCH_DIR.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            names.append(path.stem)
    return names


def run_one(name: str, options: list[str]) -> bool:
    """Import bench.<name> and call its main() with argv set to the options; True when it succeeded."""
    print(f"== bench.{name} ==", flush=True)
    started = time.perf_counter()
    saved_argv = sys.argv
    sys.argv = [f"python -m bench.{name}", *options]
    try:
        module = importlib.import_module(f"bench.{name}")
        status = module.main()
        ok = status is None or status == 0
        if not ok:
            print(f"bench.{name}: main() returned {status}", file=sys.stderr)
    except SystemExit as stop:  # argparse and friends
        ok = stop.code in (None, 0)
        if not ok:
            print(f"bench.{name}: exited with status {stop.code}", file=sys.stderr)
    except Exception:
        ok = False
        traceback.print_exc()
    finally:
        sys.argv = saved_argv
    print(f"-- bench.{name}: {'done' if ok else 'FAILED'} in {time.perf_counter() - started:.1f} s --\n", flush=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    options: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, options = args[:cut], args[cut + 1:]
    available = benchmark_names()
    wanted = [a.removesuffix(".py").removeprefix("bench.") for a in args] or available
    unknown = [w for w in wanted if w not in available]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    if options and len(wanted) != 1:
        print("options after '--' need exactly one benchmark named before them", file=sys.stderr)
        return 2
    failed = [name for name in wanted if not run_one(name, options)]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
