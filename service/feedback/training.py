"""The score log and outcomes as a training source: `URL::training_deals`, or a SELECT with the extras.

The `training_deals` view (a migration) has the contract's deal columns. A deal's extra features live
in its logged JSON under names only the data knows, so a view cannot list them; this module looks at
which extra fields the log holds and writes the SELECT that adds them as columns, numbers as numbers.
"""

from __future__ import annotations

import re
from collections import defaultdict

import sqlalchemy as sa

from model.contract import DEALS
from service.feedback.tables import TRAINING_DEALS_VIEW

# Only plain names become columns: they go into SQL as identifiers and JSON paths. Matched whole (fullmatch):
# with `$`, a name sent as "status\n" passed, SQLAlchemy's quoting (fooled alike) left it bare, and the SELECT
# had a second `status` column, which training refuses.
_PLAIN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_NOT_EXTRA = frozenset({*DEALS.names, "client"})
_NUMERIC = {"postgresql": {"number"}, "sqlite": {"integer", "real"}}
_NULL = {"null"}


# Each deal's latest logged scoring: the row the training views and training_query read.
_LATEST = ("SELECT s.deal_id, s.deal, ROW_NUMBER() OVER (PARTITION BY s.deal_id ORDER BY s.scored_at DESC, "
           "s.id DESC) AS latest FROM score_log s")


def extra_fields(engine: sa.Engine) -> dict[str, str]:
    """Extra fields of the logged deals as training reads them (each deal's latest scoring): name -> "number"
    (every value a number) or "text". (Typed from every scoring, a field once sent as "n/a" stayed text, and a
    prune of old scorings changed its type: a diff review.)"""
    if engine.dialect.name == "postgresql":
        query = (f"SELECT e.key, jsonb_typeof(e.value), count(*) FROM ({_LATEST}) l, jsonb_each(l.deal) e "
                 "WHERE l.latest = 1 GROUP BY 1, 2")
    else:
        query = (f"SELECT j.key, j.type, count(*) FROM ({_LATEST}) l, json_each(l.deal) j WHERE l.latest = 1 "
                 "GROUP BY 1, 2")
    kinds: dict[str, set[str]] = defaultdict(set)
    with engine.connect() as connection:
        for key, kind, _count in connection.execute(sa.text(query)):
            if key not in _NOT_EXTRA and _PLAIN_NAME.fullmatch(key):
                kinds[key].add(kind)
    numeric = _NUMERIC.get(engine.dialect.name, set())
    out: dict[str, str] = {}
    for key, seen in sorted(kinds.items()):
        present = seen - _NULL
        if present & {"object", "array"}:
            continue  # nested values are not features
        if present:
            out[key] = "number" if present <= numeric else "text"
    return out


def training_query(engine: sa.Engine) -> str:
    """SELECT over training_deals plus the extra fields of each deal's latest logged request."""
    extras = extra_fields(engine)
    quote = engine.dialect.identifier_preparer.quote
    columns = []
    for name, kind in extras.items():
        if engine.dialect.name == "postgresql":
            value = f"l.deal ->> '{name}'"
            columns.append(f"CAST({value} AS DOUBLE PRECISION) AS {quote(name)}" if kind == "number"
                           else f"{value} AS {quote(name)}")
        else:
            path = f"'$.{name}'"
            columns.append(f"CAST(json_extract(l.deal, {path}) AS REAL) AS {quote(name)}" if kind == "number" else
                           f"CASE json_type(l.deal, {path}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
                           f"ELSE json_extract(l.deal, {path}) END AS {quote(name)}")
    if not columns:
        return f"SELECT * FROM {TRAINING_DEALS_VIEW}"
    return (f"SELECT t.*, {', '.join(columns)} FROM {TRAINING_DEALS_VIEW} t "
            f"JOIN ({_LATEST}) l ON l.deal_id = t.deal_id AND l.latest = 1")


def training_source(engine: sa.Engine, url: str, *, flatten_extras: bool = True) -> str:
    """What to pass as `--deals`: `URL::training_deals`, or `URL::SELECT ...` with the extra features."""
    what = training_query(engine) if flatten_extras else TRAINING_DEALS_VIEW
    return f"{url}::{what}"
