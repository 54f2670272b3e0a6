"""Over HTTP, the service scores deals exactly as `dealscore score` does offline."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from service_fixtures import (  # noqa: F401 (fixtures, registered by name)
    TODAY,
    deal_payloads,
    fixture_service_artifact,
    fixture_service_crm,
    fixture_service_dataset,
    fixture_service_training,
    make_client,
)

from dealscore.cli import main as dealscore
from model.artifact import load_artifact
from service import Settings, create_app
from training.synthetic_crm import SyntheticCRM


@pytest.mark.parametrize("chunk", [None, 7])
def test_service_scores_equal_the_command_line(service_crm: SyntheticCRM, service_artifact: Path,
                                               tmp_path: Path, chunk: int | None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    if chunk is not None:  # a file scored a few deals at a time, as a large one is, scores the same
        monkeypatch.setattr("dealscore.offline.SCORE_CHUNK", chunk)
    deals = service_crm.deals.tail(300).copy()  # the open deals and the latest closed ones
    deals.loc[deals.index[:5], "source"] = None  # averaged out of the trees alike (model/unsent_paths.py)
    deals.loc[deals.index[5:8], "product"] = ["deposti", " Deposit ", "leasing 2"]  # a typo, a spelling, a new one
    deals_csv, clients_csv, out_csv = tmp_path / "deals.csv", tmp_path / "clients.csv", tmp_path / "scores.csv"
    deals.to_csv(deals_csv, index=False)
    service_crm.clients.to_csv(clients_csv, index=False)
    assert dealscore(["score", "--model", str(service_artifact), "--deals", str(deals_csv),
                      "--clients", str(clients_csv), "--out", str(out_csv)]) == 0
    offline = pd.read_csv(out_csv, dtype={"deal_id": str}).set_index("deal_id")

    model, metadata = load_artifact(service_artifact)
    app = create_app(Settings(), model=model, metadata=metadata, clock=lambda: TODAY)
    with make_client(app) as client:
        response = client.post("/v1/score", json={"deals": deal_payloads(deals, service_crm.clients)})
    assert response.status_code == 200, response.text
    online = pd.DataFrame(response.json()["scores"]).set_index("deal_id")

    assert list(online.index) == list(deals["deal_id"])
    offline = offline.loc[online.index]
    for column in ("p_win", "value", "expected_value", "value_per_hour"):
        pd.testing.assert_series_equal(online[column].astype(float), offline[column].astype(float),
                                       check_names=False, rtol=1e-12, atol=0)
    assert list(online["grade"]) == list(offline["grade"])
    assert list(online["grade_reason"]) == list(offline["grade_reason"])
    assert list(online["history_source"]) == list(offline["history_source"])
    assert list(online["not_sent"]) == [json.loads(v) for v in offline["not_sent"]]
    assert list(online["not_sent"])[:6] == [["source"]] * 5 + [[]]
    assert list(online["unseen"]) == [json.loads(v) for v in offline["unseen"]]
    assert list(online["unseen"])[4:9] == [[], ["product"], [], ["product"], []]
    # The reasons as the service answers them, each in a manager's words too.
    texts = [[r["text"] for r in reasons] for reasons in online["reasons"]]
    assert texts == [[r.get("text") for r in json.loads(v)] for v in offline["reasons"]]
    assert all(texts)
    assert (online["model_version"] == offline["model_version"]).all()
    assert all(online["p_win"].between(0, 1))
    assert online["p_win"].nunique() > 100  # real scores, not a constant


@pytest.mark.parametrize("n", [1, 7])
def test_a_deal_scores_the_same_alone_and_in_a_batch(service_crm: SyntheticCRM, service_artifact: Path,
                                                     n: int) -> None:
    payloads = deal_payloads(service_crm.deals.tail(n), service_crm.clients)
    model, metadata = load_artifact(service_artifact)
    app = create_app(Settings(), model=model, metadata=metadata, clock=lambda: TODAY)
    with make_client(app) as client:
        batch = client.post("/v1/score", json={"deals": payloads}).json()["scores"]
        alone = [client.post("/v1/score", json={"deals": [p]}).json()["scores"][0] for p in payloads]
    assert alone == batch


def test_every_problem_of_a_deals_files_client_history_is_listed_in_one_run(
        service_crm: SyntheticCRM, service_artifact: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A value that did not read (a date after today) hid the rows whose parts disagree until it was fixed and
    the command run again (a CLI review)."""
    deals = service_crm.deals[service_crm.deals["status"] == "open"].tail(2).copy()
    deals["won_deals"] = [1, 0]
    deals["won_amount"] = [500.0, 900.0]
    deals["first_won_at"] = ["2023-01-05", None]
    deals["last_won_at"] = ["2999-01-01", None]
    deals_csv = tmp_path / "deals.csv"
    deals.to_csv(deals_csv, index=False)
    assert dealscore(["score", "--model", str(service_artifact), "--deals", str(deals_csv),
                      "--out", str(tmp_path / "scores.csv")]) == 2
    err = capsys.readouterr().err
    assert "deals.last_won_at: expected a date from 1900-01-01 to today" in err and "(row 1)" in err
    assert "deals.won_deals: expected at least 1, as won_amount" in err and "got 0 (row 2)" in err, err  # not 0.0
    assert err.count("\n  - ") == 2, err  # row 1's unread date is said once, not again as a missing part
    # A null marker is no value: the history it leaves partial is refused, as the service refuses it (the first
    # version of this change let such a row through).
    deals["won_deals"] = [1, 1]
    deals["first_won_at"] = ["2023-01-05", "2023-01-05"]
    deals["last_won_at"] = ["null", "2023-01-05"]
    deals.to_csv(deals_csv, index=False)
    assert dealscore(["score", "--model", str(service_artifact), "--deals", str(deals_csv),
                      "--out", str(tmp_path / "scores.csv")]) == 2
    err = capsys.readouterr().err
    assert "deals.last_won_at: expected a value: won_deals is 1, and" in err and "(row 1)" in err, err  # not 1.0


def test_client_history_in_a_deals_file_is_taken_whole_as_the_service_takes_it(
        service_crm: SyntheticCRM, service_artifact: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A deals file's won_amount alone was silently ignored while history_source said 'request'. The file's
    history is now taken as the service takes it: whole, or refused naming what is missing."""
    deals = service_crm.deals[service_crm.deals["status"] == "open"].tail(3).copy()
    history = {"won_deals": 4, "won_amount": 9000.0, "first_won_at": "2023-01-05", "last_won_at": "2025-06-01"}
    deals_csv, out_csv = tmp_path / "deals.csv", tmp_path / "scores.csv"
    deals.assign(won_amount=0.0).to_csv(deals_csv, index=False)
    assert dealscore(["score", "--model", str(service_artifact), "--deals", str(deals_csv),
                      "--out", str(out_csv)]) == 2
    assert "deals.won_deals: expected the number of won deals whenever won_amount" in capsys.readouterr().err
    late_day = (pd.Timestamp(deals["created_at"].max()) + pd.Timedelta(days=1)).date().isoformat()
    for bad, says in (({"last_won_at": late_day}, "deals.last_won_at: expected a date on or before the deal's "
                                                    "created_at"),
                      ({"won_deals": -1}, "deals.won_deals: expected a number >= 0"),
                      ({"won_deals": "three"}, "deals.won_deals: expected a finite number"),
                      ({"first_won_at": "someday"}, "deals.first_won_at: expected a date like 2024-03-31"),
                      ({"last_won_at": "12/31/2024"}, "deals.last_won_at: expected a date like 2024-03-31")):
        deals.assign(**{**history, **bad}).to_csv(deals_csv, index=False)
        assert dealscore(["score", "--model", str(service_artifact), "--deals", str(deals_csv),
                          "--out", str(out_csv)]) == 2, bad
        err = capsys.readouterr().err
        assert says in err and "(rows 1, 2, 3)" in err and err.count("\n  - ") == 1, err  # one line per kind
    deals.assign(**history).to_csv(deals_csv, index=False)
    assert dealscore(["score", "--model", str(service_artifact), "--deals", str(deals_csv),
                      "--out", str(out_csv)]) == 0
    offline = pd.read_csv(out_csv, dtype={"deal_id": str}).set_index("deal_id")

    model, metadata = load_artifact(service_artifact)
    app = create_app(Settings(), model=model, metadata=metadata, clock=lambda: TODAY)
    payloads = [{**p, "client": {**p.get("client", {}), "client_id": p["client_id"], **history}}
                for p in deal_payloads(deals, None)]
    with make_client(app) as client:
        response = client.post("/v1/score", json={"deals": payloads})
    assert response.status_code == 200, response.text
    online = pd.DataFrame(response.json()["scores"]).set_index("deal_id")
    assert list(online["history_source"]) == list(offline.loc[online.index, "history_source"]) == ["request"] * 3
    pd.testing.assert_series_equal(online["p_win"].astype(float), offline.loc[online.index, "p_win"].astype(float),
                                   check_names=False, rtol=1e-12, atol=0)


def test_a_deals_files_client_history_dates_are_read_in_the_mappings_date_format(
        service_crm: SyntheticCRM, service_artifact: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The mapping file's date_format is the deals table's, but first_won_at and last_won_at were read as ISO 8601
    alone: an export writing every date as 31/12/2024 had its created_at read and its history refused (a dates
    audit). Read in the format, the history scores as the same days written in ISO do."""
    deals = service_crm.deals[service_crm.deals["status"] == "open"].tail(3).drop(columns=["closed_at", "status"])
    history = {"won_deals": 4, "won_amount": 9000.0, "first_won_at": "2023-01-05", "last_won_at": "2025-06-01"}
    iso_csv, local_csv, mapping = tmp_path / "iso.csv", tmp_path / "local.csv", tmp_path / "mapping.yaml"
    deals.assign(**history).to_csv(iso_csv, index=False, date_format="%Y-%m-%d")
    deals.assign(**{**history, "first_won_at": "05/01/2023", "last_won_at": "01/06/2025"}).to_csv(
        local_csv, index=False, date_format="%d/%m/%Y")
    mapping.write_text('deals:\n  date_format: "%d/%m/%Y"\n')
    scores = {}
    for name, source, options in (("iso", iso_csv, []), ("local", local_csv, ["--mapping", str(mapping)])):
        out = tmp_path / f"{name}_scores.csv"
        assert dealscore(["score", "--model", str(service_artifact), "--deals", str(source), *options,
                          "--out", str(out)]) == 0, capsys.readouterr().err
        scores[name] = pd.read_csv(out, dtype={"deal_id": str}).set_index("deal_id")
    assert list(scores["local"]["history_source"]) == ["request"] * 3
    compared = ["p_win", "expected_value"]
    pd.testing.assert_frame_equal(scores["local"][compared], scores["iso"][compared])
    # A history date in ISO under the dd/mm/yyyy format is refused, as created_at would be.
    deals.assign(**history).to_csv(local_csv, index=False, date_format="%d/%m/%Y")
    assert dealscore(["score", "--model", str(service_artifact), "--deals", str(local_csv), "--mapping", str(mapping),
                      "--out", str(tmp_path / "refused.csv")]) == 2
    err = capsys.readouterr().err
    assert "deals.first_won_at: expected a date like 31/03/2024 (format '%d/%m/%Y'), got '2023-01-05'" in err, err


DATE_SPELLINGS = ["{d}", "{d}T23:30:00", "{d}T23:30:00-11:00", "{d}T00:30:00+14:00", "{d}T23:59:59.999Z", "{c}",
                  " {d} ", "{d}t08:00"]


def test_a_deals_own_day_written_with_a_time_or_a_zone_scores_the_same_over_http_and_offline(
        service_crm: SyntheticCRM, service_artifact: Path, tmp_path: Path) -> None:
    """A deal created at 23:30 at UTC-11 is already the next day in UTC: both paths date it by its own wall-clock day,
    so every spelling of a day (a time, an offset, Z, the compact form, spaces) scores as the plain date does, over
    HTTP and in `dealscore score` alike (a dates audit). A Parquet timestamp in the deal's own zone reads the same."""
    deals = service_crm.deals[service_crm.deals["status"] == "open"].tail(12).drop(columns=["closed_at", "status"])
    days = [d.date().isoformat() for d in deals["created_at"]]
    clients = service_crm.clients.assign(since=[d.date().isoformat() + "T23:30:00-11:00"
                                                for d in service_crm.clients["since"]])
    clients_csv = tmp_path / "clients.csv"
    clients.to_csv(clients_csv, index=False)
    model, metadata = load_artifact(service_artifact)
    app = create_app(Settings(), model=model, metadata=metadata, clock=lambda: TODAY)

    def offline(source: Path) -> pd.Series:
        out = tmp_path / "scores.csv"
        assert dealscore(["score", "--model", str(service_artifact), "--deals", str(source), "--clients",
                          str(clients_csv), "--out", str(out)]) == 0
        return pd.read_csv(out, dtype={"deal_id": str}).set_index("deal_id")["p_win"]

    scores: dict[str, tuple[pd.Series, pd.Series]] = {}
    with make_client(app) as client:
        for spelling in DATE_SPELLINGS:
            written = deals.assign(created_at=[spelling.format(d=d, c=d.replace("-", "")) for d in days])
            source = tmp_path / "deals.csv"
            written.to_csv(source, index=False)
            response = client.post("/v1/score", json={"deals": deal_payloads(written, clients)})
            assert response.status_code == 200, (spelling, response.text)
            online = pd.DataFrame(response.json()["scores"]).set_index("deal_id")["p_win"]
            scores[spelling] = (offline(source), online)
    plain = scores["{d}"][0]
    assert plain.nunique() > 3  # real scores, and dates that matter: the deals' days differ
    for spelling, (file_scores, http_scores) in scores.items():
        pd.testing.assert_series_equal(file_scores, plain, check_names=False, rtol=0, atol=0, obj=spelling)
        pd.testing.assert_series_equal(http_scores, plain, check_names=False, rtol=0, atol=0, obj=spelling)

    local = pd.DatetimeIndex([f"{d}T23:30:00-11:00" for d in days]).as_unit("us")
    parquet = tmp_path / "deals.parquet"
    deals.assign(created_at=local).to_parquet(parquet, index=False)
    pd.testing.assert_series_equal(offline(parquet), plain, check_names=False, rtol=0, atol=0)
