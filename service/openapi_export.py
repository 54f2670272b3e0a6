"""Write the app's OpenAPI document: `python -m service.openapi_export openapi.json [--check]`.

The committed openapi.json is this command's output for the default settings; a test fails when the two
differ, so the published contract is always the one the code serves.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["openapi_document", "render", "main"]


def openapi_document() -> dict[str, Any]:
    from service.app import create_app
    from service.feedback import Feedback, FeedbackConfig
    from service.settings import Settings

    # Defaults only: the document must not depend on the DEALSCORE_* variables of whoever generates it.
    # The feedback store is never started here (no database is touched); it only adds its routes.
    feedback = Feedback(FeedbackConfig(database_url="sqlite://", spool_dir=Path("unused")))
    document: dict[str, Any] = create_app(Settings.model_construct(), feedback=feedback).openapi()
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.openapi_export", description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="openapi.json", help="file to write (default: openapi.json)")
    parser.add_argument("--check", action="store_true", help="only check that the file is up to date")
    args = parser.parse_args(argv)
    text = render(openapi_document())
    path = Path(args.out)
    if args.check:
        if not path.is_file() or path.read_text() != text:
            sys.stderr.write(f"{path} is out of date: run `make openapi`\n")
            return 1
        return 0
    path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
