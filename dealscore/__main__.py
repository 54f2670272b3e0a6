from dealscore.console import run

raise SystemExit(run())
