"""Reasons in a manager's words: every reason a model shows reads without the data dictionary."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from model.dataset import Dataset
from model.features import attach_clients, frame_columns
from model.reason_text import LOWERS, RAISES, reason_text
from model.records import deal_columns
from training.fit import TrainingResult


def test_every_reason_a_model_shows_reads_without_its_feature_name(
        trained: TrainingResult, small_dataset: Dataset) -> None:
    spec = trained.model.spec
    deals = small_dataset.deals[small_dataset.deals["status"] == "open"].head(300).copy()
    # Values not sent read too: an amount valued by the model, a competitor not named.
    deals.loc[deals.index[:30], ["amount", "competitor"]] = np.nan
    batch = trained.model.score(frame_columns(attach_clients(deals, small_dataset.clients)),
                                n_reasons=len(spec.names))
    shown = [r for reasons in batch.reasons for r in reasons]
    features = {r.feature for r in shown}
    # The trees push these deals through client history, win rates and time, not only through the CRM's columns.
    assert {"client_status", "client_won_deals", "recent_win_rate", "amount"} <= features
    for reason in shown:
        text = reason.text
        assert text.endswith(": " + (RAISES if reason.effect > 0 else LOWERS)), text
        if reason.feature in spec.categorical:  # a column of the CRM's: its name and the level sent
            level = "not given" if reason.value is None else f"is {reason.value}"
            assert text.startswith(f"{reason.feature} {level}:"), text
        else:  # one of the model's own features (or amount, effort_hours, month): in words, never its name
            assert "_" not in text, text
    assert any(r.text.startswith("no amount sent, or 0 (read as no quote yet; valued by the model): ")
               for r in shown if r.feature == "amount")


@pytest.mark.parametrize(("feature", "value", "expected"), [
    ("client_days_since_last_win", 0.0, "client's last win today"),
    ("client_days_since_last_win", 1.0, "client's last win 1 day ago"),
    ("client_days_since_last_win", 1234.0, "client's last win 1,234 days ago"),
    ("client_days_since_last_win", None, "client has no win yet"),
    ("client_won_deals", 1.0, "client won 1 deal before"),
    ("client_won_deals", 8.0, "client won 8 deals before"),
    # The client's rate is smoothed towards the team's (a client that lost its only deal reads about 33%): no
    # "client won 33% of its earlier deals", which read as a count.
    ("client_win_rate", 0.25, "client's win rate 25%, its earlier deals weighed with the team's"),
    ("recent_win_rate", 0.4, "team's recent win rate 40%"),
    ("effort_hours", 1.0, "1 hour of work"),
    ("effort_hours", 12345.0, "12,345 hours of work"),
    ("month", 3.0, "created in March"),
    ("amount", 12000.0, "amount 12,000"),
    ("amount", 0.4, "amount 0.4"),  # not "amount 0" (a review)
    ("client_won_amount", 1234.5, "client paid 1,234 on earlier wins"),
    ("client_tenure_days", 1258.0, "client for 1,258 days"),  # not "client since 1,258 days"
    ("client_tenure_days", -234.0, "client's start date 234 days after this deal"),  # not "client for -234 days"
    ("client_status", "lost", "client status is lost"),
    ("source", "referral", "source is referral"),
    ("source", None, "source not given"),
    ("client_subsidiary_of", None, "client's subsidiary_of not given"),  # blank in the clients table: not "not sent"
    ("client_tier", "gold", "client's tier is gold"),  # a clients table's extra column X is client_X
    ("Deal Score", 3.25, "Deal Score is 3.25"),
    # A CRM's own numbers as they read: never in e-notation, a year without a thousands separator.
    ("balance", 12980.0, "balance is 12,980"),
    ("client_revenue", 11700.25, "client's revenue is 11,700"),
    ("client_year_established", 2003.0, "client's year_established is 2003"),
    ("balance", -120000.0, "balance is -120,000"),
    ("share", 0.00001234, "share is 0.00001234"),
    ("share", 692.25, "share is 692.2"),
    # Every wording of the model's own features, and its boundaries (a mutation audit: each survived a change).
    ("client_won_deals", 0.0, "client won 0 deals before"),  # not "0 deal"
    ("client_closed_deals", 3.0, "client closed 3 deals before"),
    ("client_product_deals", 1.0, "1 earlier deal of this product with the client"),
    ("client_product_wins", 2.0, "client won this product 2 times before"),
    ("client_days_since_first_win", 400.0, "client's first win 400 days ago"),
    ("client_days_since_first_win", None, "client has no win yet"),
    ("client_tenure_days", 0.0, "client for 0 days"),  # the client's start date itself
    ("client_tenure_days", None, "client's start date not given"),
    ("overall_win_rate", 0.3, "team's win rate so far 30%"),
    ("month", 12.0, "created in December"),
    ("client_won_deals", None, "client won deals not known"),  # no wording for no value: the name in words
    ("balance", 10000.0, "balance is 10,000"),
    ("balance", float("inf"), "balance is inf"),  # a CRM column's inf is shown (the scorer keeps it), not a 500
])
def test_a_reason_says_what_the_deal_has(feature: str, value: str | float | None, expected: str) -> None:
    assert reason_text(feature, value, True) == f"{expected}: raises the chance"
    assert reason_text(feature, value, False) == f"{expected}: lowers the chance"


def test_a_client_status_read_from_an_old_history_says_how_old(trained: TrainingResult, small_dataset: Dataset) -> None:
    """client_status's push includes the history's age (the trees' allowance for wins since): a year past the
    model's history, 181 of the 308 open deals of a 6,000-deal generated CRM read "client status is lost: raises
    the chance". The line says as of when the status is, and a deal with a current history reads as before."""
    model = trained.model
    deals = small_dataset.deals[small_dataset.deals["status"] == "open"].head(300).copy()
    later = deals.assign(created_at=pd.Timestamp(np.datetime64(model.history.last_day + 365, "D")))
    columns = frame_columns(attach_clients(later, small_dataset.clients))
    shown = [r for reasons in model.score(columns, n_reasons=len(model.spec.names)).reasons for r in reasons
             if r.feature == "client_status"]
    assert any(r.value == "lost" and r.effect > 0 for r in shown)  # the case a manager could not read
    # Only client_status's push includes the history's age: no other reason says "as of".
    others = [r for reasons in model.score(columns, n_reasons=len(model.spec.names)).reasons for r in reasons
              if r.feature != "client_status"]
    assert others and not any(" as of " in r.text for r in others)
    for reason in shown:
        if reason.value == "prospect":
            continue
        assert reason.text.startswith(f"client status is {reason.value} as of "), reason.text
        assert " days ago: " in reason.text, reason.text
    current = model.score(frame_columns(attach_clients(deals, small_dataset.clients)), n_reasons=len(model.spec.names))
    for reason in (r for reasons in current.reasons for r in reasons if r.feature == "client_status"):
        if reason.text.startswith(f"client status is {reason.value}:"):
            continue
        assert " as of " in reason.text  # only deals dated after the model's history


def test_a_client_that_closed_no_deal_shows_no_win_rate_of_its_own(
        trained: TrainingResult, small_dataset: Dataset) -> None:
    """A client that closed no deal before (a prospect, or a deal naming no client) has the team's rate as its
    win rate, a stand-in: maven's deals read "client's win rate 63%, its earlier deals weighed with the team's"
    on 2,258 of 8,800 deals whose client had closed none (a manager-view audit)."""
    model = trained.model
    spec = model.spec
    deals = small_dataset.deals[small_dataset.deals["status"] == "open"].head(200).copy()
    newcomers = deals.assign(client_id=[f"never-seen-{i}" for i in range(len(deals))])
    batch = model.score(frame_columns(attach_clients(newcomers, small_dataset.clients)), n_reasons=len(spec.names))
    rates = [r for reasons in batch.reasons for r in reasons if r.feature == "client_win_rate"]
    assert rates, "the trees push these deals through the client's win rate"
    for reason in rates:
        assert reason.value is None and reason.text.startswith("client has closed no deal yet: "), reason
    # A client with closed deals keeps its own (smoothed) rate, as a share.
    known = model.score(frame_columns(attach_clients(deals, small_dataset.clients)), n_reasons=len(spec.names))
    own = [r for reasons in known.reasons for r in reasons if r.feature == "client_win_rate" and r.value is not None]
    assert own and all(r.text.startswith("client's win rate ") for r in own)


@pytest.mark.parametrize("path", ["file", "request"])
def test_a_deal_without_a_creation_date_is_not_said_to_be_created_this_month(
        trained: TrainingResult, small_dataset: Dataset, path: str) -> None:
    """A deal sent without created_at is scored as of today, so the month that pushes is today's: maven's undated
    deals, scored in December, read "created in December" (37 of 66 in a manager-view audit). Alike from a file
    (`dealscore score`: the scorer dates it) and from a request (the service dates it before scoring)."""
    model = trained.model
    deals = small_dataset.deals[small_dataset.deals["status"] == "open"].head(200).copy()
    undated = deals.assign(created_at=pd.NaT)
    dated = set(deals["deal_id"].iloc[::2])
    undated.loc[undated["deal_id"].isin(dated), "created_at"] = deals["created_at"]  # half keep their date
    if path == "file":
        columns = frame_columns(attach_clients(undated, small_dataset.clients))
    else:
        sent = undated.drop(columns=["status", "closed_at"])
        records = [{k: (v.strftime("%Y-%m-%d") if isinstance(v, pd.Timestamp) else v) for k, v in r.items()
                    if v is not None and v == v} for r in sent.to_dict("records")]
        columns = deal_columns(records, today=date(2026, 12, 7))
    batch = model.score(columns, n_reasons=len(model.spec.names))
    months = {deal: [r for r in reasons if r.feature == "month"]
              for deal, reasons in zip(undated["deal_id"], batch.reasons, strict=True)}
    assert any(months[d] for d in months if d not in dated), "the trees push these deals through the month"
    for deal, shown in months.items():
        for reason in shown:
            if deal in dated:
                assert reason.value is not None and reason.text.startswith("created in "), reason
            else:
                assert reason.value is None, reason
                assert reason.text.startswith("no creation date sent (scored as of today): "), reason


@pytest.mark.parametrize(("history_age", "expected"), [
    (None, "client status is lost"),
    (0.0, "client status is lost"),  # a current history: nothing to say
    (0.4, "client status is lost"),
    (1.0, "client status is lost as of 1 day ago"),
    (200.0, "client status is lost as of 200 days ago"),
    (1234.0, "client status is lost as of 1,234 days ago"),
])
def test_a_client_status_says_the_age_of_its_history_exactly(history_age: float | None, expected: str) -> None:
    assert reason_text("client_status", "lost", True, history_age) == f"{expected}: raises the chance"


def test_a_deal_dated_before_any_closed_deal_shows_no_team_win_rate(
        trained: TrainingResult, small_dataset: Dataset) -> None:
    """Before the first closed deal both team rates read 0.5, a stand-in: a backfilled deal's reasons said
    "team's recent win rate 50%" though the team had closed nothing yet."""
    model = trained.model
    deals = small_dataset.deals[small_dataset.deals["status"] == "open"].head(200).copy()
    first = pd.Timestamp(small_dataset.deals["created_at"].min()) - pd.Timedelta(days=30)
    n_reasons = len(model.spec.names)
    early = model.score(frame_columns(attach_clients(deals.assign(created_at=first), small_dataset.clients)),
                        n_reasons=n_reasons)
    team = [r for reasons in early.reasons for r in reasons if r.feature in ("overall_win_rate", "recent_win_rate")]
    assert team, "the trees push these deals through the team's rates"
    for reason in team:
        assert reason.value is None
        assert reason.text.startswith("no deal of the team had closed before this one: "), reason.text
    # Dated within the history, the same deals show the rates the team had.
    later = model.score(frame_columns(attach_clients(deals, small_dataset.clients)), n_reasons=n_reasons)
    rates = [r for reasons in later.reasons for r in reasons if r.feature in ("overall_win_rate", "recent_win_rate")]
    assert rates and all(isinstance(r.value, float) and 0 < r.value < 1 and "%" in r.text for r in rates)


def test_a_start_date_after_the_deal_is_shown_as_sent(trained: TrainingResult, small_dataset: Dataset) -> None:
    """The tenure of a client whose start date comes after the deal is read as not sent (model/features.py
    as_of_tenure); its reason still shows the date the deal came with, not the stand-in's days."""
    model = trained.model
    deals = small_dataset.deals[small_dataset.deals["status"] == "open"].head(100)
    columns = frame_columns(attach_clients(deals, small_dataset.clients))
    created = np.asarray(columns["created_day"], dtype=np.float64)
    strangers = {**columns, "client_id": np.array([f"new-{i}" for i in range(len(deals))], dtype=object)}
    batch = model.score({**strangers, "client_since_day": created + 30}, n_reasons=len(model.spec.names))
    shown = [r for reasons in batch.reasons for r in reasons if r.feature == "client_tenure_days"]
    assert shown, "the trees push these deals through the tenure"
    for reason in shown:
        assert reason.value == -30.0
        assert reason.text.startswith("client's start date 30 days after this deal: "), reason.text
    # Scored as the same deals without a start date.
    unsent = model.score({**strangers, "client_since_day": np.full(len(deals), np.nan)}, n_reasons=0)
    np.testing.assert_array_equal(batch.p_win, unsent.p_win)
