"""Pruning the score log: what every reader sees is the same before and after, and the rest is gone."""

from __future__ import annotations

import argparse
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from test_feedback_helpers import count, database_url_fixture  # noqa: F401 (fixtures)

from dealscore.feedback_commands import add_feedback_commands
from service.feedback.db import make_engine, upgrade
from service.feedback.outcomes import latest_logged_deals
from service.feedback.prune import LoggedScoring, needed, prune_score_log
from service.feedback.quality import model_versions, quality_report
from service.feedback.tables import judgements, outcomes, score_log
from service.feedback.training import extra_fields, training_query

START = datetime(2025, 3, 1, 20, 0, tzinfo=UTC)


def _nightly_log(engine: sa.Engine, seed: int = 3) -> None:
    """30 deals re-scored about nightly for 40 nights by two versions in turn (v1, then v2 from night 20),
    some twice a night; a third of them with their client's attributes for the first 30 nights; half closed,
    some scored after closing; managers' judgements between scorings."""
    rng = random.Random(seed)
    rows, outcome_rows, judgement_rows = [], [], []
    for d in range(30):
        deal_id, client = f"D{d:02d}", f"C{d % 7}"
        for night in range(40):
            if rng.random() < 0.15:
                continue
            version = "v1" if night < 20 else "v2"
            for repeat in range(rng.choice((1, 1, 2))):
                at = START + timedelta(days=night, hours=repeat * 3, minutes=d)
                p = rng.random()
                deal: dict[str, Any] = {"deal_id": deal_id, "client_id": client, "amount": 100.0 * (d + 1),
                                        "product": "loan", "source": rng.choice(("web", "referral")),
                                        # an extra field sent as text at first, as a number later
                                        "channel_score": "n/a" if night < 5 else night % 7}
                if d % 3 == 0 and night < 30:  # later scorings without it: the view keeps the last with it
                    deal["client"] = {"client_id": client, "industry": rng.choice(("retail", "it")), "size": "small"}
                rows.append({"request_id": f"r{night}-{repeat}-{d}", "deal_id": deal_id, "model_version": version,
                             "p_win": p, "value": 100.0 * (d + 1), "expected_value": p * 100.0 * (d + 1),
                             "grade": rng.choice("ABC"), "scored_at": at, "deal": deal})
        if d % 2 == 0:
            close = START + timedelta(days=rng.randrange(5, 38))
            reported = close + timedelta(days=1)  # the CRM reports it the next day
            outcome_rows.append({"deal_id": deal_id, "status": rng.choice(("won", "lost")),
                                 "amount": None, "closed_at": close.date(), "client_id": client, "revision": 1,
                                 "recorded_at": reported, "updated_at": reported})
    for j in range(25):
        above, below = rng.sample(range(30), 2)
        low, high = sorted((f"D{above:02d}", f"D{below:02d}"))
        at = START + timedelta(days=rng.randrange(0, 40), hours=rng.randrange(0, 24))
        judgement_rows.append({"manager": f"m{j}", "deal_low": low, "deal_high": high,
                               "above_deal_id": f"D{above:02d}", "below_deal_id": f"D{below:02d}", "note": None,
                               "revision": 1, "created_at": at, "updated_at": at})
    with engine.begin() as connection:
        connection.execute(score_log.insert(), rows)
        connection.execute(outcomes.insert(), outcome_rows)
        connection.execute(judgements.insert(), judgement_rows)


def _what_readers_see(engine: sa.Engine) -> dict[str, Any]:
    deal_ids = [f"D{d:02d}" for d in range(30)]
    with engine.connect() as connection:
        training = connection.execute(sa.text(training_query(engine))).mappings().all()
        clients = connection.execute(sa.text("SELECT * FROM training_clients")).mappings().all()
        logged = latest_logged_deals(connection, deal_ids)
    return {
        "extra_fields": extra_fields(engine),
        "quality": {v: quality_report(engine, v, top=50) for v in ("v1", "v2")},
        "training_deals": sorted((dict(r) for r in training), key=lambda r: r["deal_id"]),
        "training_clients": sorted((dict(r) for r in clients), key=lambda r: r["client_id"]),
        "latest_logged": logged,
        "versions": [v["version"] for v in model_versions(engine)],
    }


@pytest.fixture(name="engine")
def engine_fixture(database_url: str) -> Any:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_every_reader_sees_the_same_after_a_prune_of_the_whole_log(engine: sa.Engine) -> None:
    _nightly_log(engine)
    before, rows = _what_readers_see(engine), count(engine, "score_log")
    assert before["quality"]["v1"]["outcomes"]["deals"] > 5 and before["quality"]["v2"]["judgements"]["pairs"] > 5
    assert before["extra_fields"]["channel_score"] == "number"  # as training reads it: the deals' latest scorings

    result = prune_score_log(engine, START + timedelta(days=60))
    left = count(engine, "score_log")
    assert (result.candidates, result.deleted, left) == (rows, rows - left, result.kept)
    # Nightly re-scoring is mostly superseded: what is left is a few scorings per deal and version.
    assert left < rows / 4
    assert _what_readers_see(engine) == before
    assert prune_score_log(engine, START + timedelta(days=60)).deleted == 0  # nothing more to drop


def test_only_scorings_before_the_cut_off_are_deleted_and_a_dry_run_deletes_none(engine: sa.Engine) -> None:
    _nightly_log(engine)
    cut = START + timedelta(days=25)
    with engine.connect() as connection:
        late = connection.execute(sa.select(score_log.c.id).where(score_log.c.scored_at >= cut)).scalars().all()
    rows = count(engine, "score_log")

    dry = prune_score_log(engine, cut, dry_run=True)
    assert count(engine, "score_log") == rows and dry.deleted > 0
    done = prune_score_log(engine, cut)
    assert (done.candidates, done.deleted) == (dry.candidates, dry.deleted)
    assert count(engine, "score_log") == rows - done.deleted
    with engine.connect() as connection:
        kept_late = connection.execute(sa.select(score_log.c.id).where(score_log.c.scored_at >= cut)).scalars().all()
    assert sorted(kept_late) == sorted(late)


def test_the_scorings_a_reader_picks_for_one_deal() -> None:
    at = [datetime(2025, 1, day, 9, tzinfo=UTC) for day in (1, 3, 5, 7, 9)]
    scorings = [LoggedScoring(when, i) for i, when in enumerate(at)]
    assert needed(scorings, None, ()) == {4}  # only the latest
    assert needed(scorings, date(2025, 1, 5), ()) == {2, 4}  # and the latest on the close day
    assert needed(scorings, date(2024, 12, 31), ()) == {4}  # closed before any scoring: none said at the time
    # The outcome came in on the 4th (closed on the 5th): what the version said is the scoring before it.
    assert needed(scorings, date(2025, 1, 5), (), datetime(2025, 1, 4, tzinfo=UTC)) == {1, 4}
    # A judgement: the latest scoring at or before it, else the first after it.
    assert needed(scorings, None, [datetime(2025, 1, 4, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC)]) == {1, 0, 4}


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="dealscore")
    add_feedback_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.run(args))


def test_the_prune_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    engine = make_engine(url)
    upgrade(engine)
    _nightly_log(engine)
    rows = count(engine, "score_log")
    engine.dispose()
    today = f"{date.today():%Y-%m-%d}"

    assert _cli("db", "prune-score-log", "--database-url", url, "--before", today, "--dry-run") == 0
    said = capsys.readouterr().err
    assert f"{rows} rows scored before {today} (UTC); would delete" in said
    assert count(url, "score_log") == rows
    size = (tmp_path / "feedback.db").stat().st_size
    assert _cli("db", "prune-score-log", "--database-url", url, "--before", today, "--vacuum") == 0
    said = capsys.readouterr().err
    assert "; deleted " in said and "vacuumed" in said
    assert count(url, "score_log") < rows / 4
    assert (tmp_path / "feedback.db").stat().st_size < size

    with pytest.raises(SystemExit):
        _cli("db", "prune-score-log", "--database-url", url, "--before", "03/01/2025")
    assert "--before: expected an ISO date like 2024-03-31, got '03/01/2025'" in capsys.readouterr().err
