"""The `dealscore` command's entry point: signals at either end of the command line's own handling.

Kept free of heavy imports: Ctrl-C while pandas and the rest load (the first half second) gave a Python
traceback, and one during the interpreter's teardown (another half second, after the work was committed)
ended the process by the signal, so a wrapper read a published model as a failure (an input review).
"""

from __future__ import annotations

import signal
import sys

EXIT_SIGINT = 128 + signal.SIGINT


def run() -> int:
    try:
        from dealscore.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("dealscore: interrupted by SIGINT while starting; nothing was done\n")
        return EXIT_SIGINT
    code = main()
    # The command has finished and said so: its exit code stands through the teardown that follows.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    return code
