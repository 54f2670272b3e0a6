"""Validation of the data contract: one test per kind of bad input, each pinning where and what."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest

from model.contract import MAX_TEXT_LENGTH
from model.dataset import dataset_from_frames
from model.errors import ContractViolation, Problem
from model.records import parse_date
from model.spellings import merged_spellings_note
from model.validation import MERGED_SPELLINGS_ATTR, validate_clients, validate_deals, validate_holdings

TODAY = date(2025, 6, 30)


def make_deals(**overrides: list[Any]) -> pd.DataFrame:
    """Three valid deals as a CSV reader would hand them over (all text); keyword = column to replace."""
    columns: dict[str, list[Any]] = {
        "deal_id": ["D1", "D2", "D3"],
        "client_id": ["C1", "C2", None],
        "created_at": ["2024-01-05", "2024-02-01", "2024-03-01"],
        "closed_at": ["2024-01-20", None, None],
        "status": ["won", "lost", "open"],
        "amount": ["1000", "250.5", None],
        "product": ["Cloud", "Support", "Cloud"],
        "effort_hours": ["10", "4", "2"],
    }
    columns.update(overrides)
    return pd.DataFrame(columns, dtype=object)


def make_clients(**overrides: list[Any]) -> pd.DataFrame:
    columns: dict[str, list[Any]] = {
        "client_id": ["C1", "C2"], "industry": ["Retail", "Banking"], "since": ["2020-01-01", "2021-06-30"],
    }
    columns.update(overrides)
    return pd.DataFrame(columns, dtype=object)


def make_holdings(**overrides: list[Any]) -> pd.DataFrame:
    columns: dict[str, list[Any]] = {
        "client_id": ["C1", "C2"], "product": ["Cloud", "Support"], "revenue": ["100", "0"],
    }
    columns.update(overrides)
    return pd.DataFrame(columns, dtype=object)


def the_problem(error: pytest.ExceptionInfo[ContractViolation], table: str, field: str) -> Problem:
    found = [p for p in error.value.problems if p.table == table and p.field == field]
    assert len(found) == 1, error.value.report()
    return found[0]


def bad_deals(raw: pd.DataFrame, *, for_training: bool = True, **options: Any) -> pytest.ExceptionInfo[
    ContractViolation
]:
    with pytest.raises(ContractViolation, match="^deals table breaks the data contract") as error:
        validate_deals(raw, for_training=for_training, today=TODAY, **options)
    return error


def test_valid_deals_come_back_typed() -> None:
    raw = make_deals(Region=[" North ", "South", None], Seats=["5", "7.5", ""])
    deals = validate_deals(raw, for_training=True, today=TODAY)

    assert list(deals.columns) == [
        "deal_id", "client_id", "created_at", "closed_at", "status", "amount", "product", "effort_hours",
        "Region", "Seats",
    ]
    assert "manager" not in deals  # optional contract columns that did not come are not invented
    for column in ("deal_id", "client_id", "status", "product", "Region"):
        assert deals[column].dtype == object, column
    for column in ("created_at", "closed_at"):
        assert deals[column].dtype == "datetime64[ns]", column
    for column in ("amount", "effort_hours", "Seats"):
        assert deals[column].dtype == "float64", column
    assert deals["client_id"].tolist()[:2] == ["C1", "C2"] and np.isnan(deals["client_id"][2])
    assert all(type(s) is str for s in deals["status"])
    assert deals["created_at"][0] == pd.Timestamp("2024-01-05")
    assert deals["Region"].tolist()[:2] == ["North", "South"]  # trimmed
    assert deals["Seats"].tolist()[:2] == [5.0, 7.5]


def test_dates_are_normalised_to_midnight_and_time_zones_keep_their_own_date() -> None:
    raw = make_deals(created_at=["2024-01-05T10:30:00", "2024-02-01T23:00:00-05:00", "2024-03-01 08:00"])
    deals = validate_deals(raw, for_training=True, today=TODAY)
    assert deals["created_at"].tolist() == [
        pd.Timestamp("2024-01-05"), pd.Timestamp("2024-02-01"), pd.Timestamp("2024-03-01"),
    ]


def test_a_file_reads_every_date_form_the_api_reads_as_the_api_does() -> None:
    """The service parses dates with model.records.parse_date, files with pandas: "2025-12-01t10:00" (RFC 3339's
    lower-case t) was taken by the API and refused in a file (an API review)."""
    forms = ["2024-12-01", "2024-12-01T10:00", "2024-12-01t10:00", "2024-12-01 10:00", "20241201", "20241201t1000",
             "2024-12-01T23:30:00+05:00", "2024-12-01T10:00:00Z", "2024-12-01T10:00:00.123456789"]
    raw = pd.DataFrame({"deal_id": [f"D{i}" for i in range(len(forms))], "created_at": forms,
                        "status": ["won"] * len(forms)})
    deals = validate_deals(raw, for_training=True, today=TODAY)
    assert [d.date() for d in deals["created_at"]] == [parse_date(form) for form in forms]


def test_a_file_and_the_api_read_the_same_date_text_alike() -> None:
    """Files were read by pandas' ISO 8601 parser and the API by Python's: of 3,000 random date texts, 377 were read
    by one and refused by the other (55 once year-first dates were written alike). Files now read dates through
    parse_date too. Each text here was taken by one path alone."""
    forms = ["2024/12/01", "2024-12-1", "2024.12.01", "2024 12 01", "2024\\12\\01", "2024/12/01 10:00",
             "2024-12-01T9:05", "2024-12-01T10:00+2", "2024-12-01 10:00:00,5 +02:00", "2024-12-01T104154+2",
             "2024-12-01T10:00:00+02:00:30", "2024/12/01t10:00", "2024\\12", "01/12/2024", "2024-W48-7", "2024-336"]
    raw = pd.DataFrame({"deal_id": [f"D{i}" for i in range(len(forms))], "created_at": forms})
    refused = []
    try:
        deals = validate_deals(raw, for_training=False, today=TODAY)
    except ContractViolation as error:
        refused = [int(row) for p in error.problems if p.field == "created_at" for row in p.rows]
        deals = validate_deals(raw.drop(index=[row - 1 for row in refused]), for_training=False, today=TODAY)

    def api(form: str) -> date | None:
        try:
            return parse_date(form)
        except ValueError:
            return None

    read = dict(zip(deals["deal_id"], (d.date() for d in deals["created_at"]), strict=True))
    assert {form: read.get(f"D{i}") for i, form in enumerate(forms)} == {form: api(form) for form in forms}
    assert [forms[row - 1] for row in refused] == ["2024\\12", "01/12/2024", "2024-W48-7", "2024-336"]


def test_local_times_across_a_dst_change_are_read_per_offset_by_their_own_days(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A CRM's local times carry two offsets a year (+01:00 in winter, +02:00 in summer), and a column of mixed
    offsets was parsed value by value: 11.5 s for 200,000 dates against 0.5 s with one offset (a dates audit). Each
    offset's values are now parsed together, every value still dated by its own wall-clock day."""
    def value_by_value(value: object, date_format: str | None = None) -> object:
        raise AssertionError(f"parsed value by value: {value!r}")

    forms = ["2024-01-10T23:30:00+01:00", "2024-07-01T00:30:00+02:00", "2024-03-31T01:59:59+01:00",
             "2024-03-31T03:00:00+02:00", "2024-10-27T02:30:00+02:00", "2024-10-27T02:30:00+01:00",
             "2025-04-01", "2025-04-02T12:00:00", "2025-05-01T23:30:00-11:00", "2025-05-02T00:30:00Z", None]
    raw = make_deals(created_at=forms, deal_id=[f"D{i}" for i in range(len(forms))],
                     client_id=[None] * len(forms), closed_at=[None] * len(forms), status=["open"] * len(forms),
                     amount=[None] * len(forms), product=[None] * len(forms), effort_hours=[None] * len(forms))
    monkeypatch.setattr("model.validation._one_timestamp", value_by_value)
    deals = validate_deals(raw, for_training=False, today=TODAY)
    assert [None if pd.isna(d) else d.date() for d in deals["created_at"]] == [
        None if form is None else parse_date(form) for form in forms]


def test_a_long_junk_value_beside_two_offsets_is_refused_in_linear_time() -> None:
    """Finding each value's UTC offset scanned from every space or "t" to the end of the value: one pasted note
    of 40,000 characters in a column of local times across a DST change took some 16 s to refuse (quadratic in
    its length; 100,000 characters, minutes)."""
    import time

    junk = "2024-01-05 " + "t " * 20_000
    raw = make_deals(created_at=["2024-01-05T10:00:00+01:00", "2024-07-01T10:00:00+02:00", junk])
    started = time.perf_counter()
    problem = the_problem(bad_deals(raw), "deals", "created_at")
    assert time.perf_counter() - started < 2.0
    assert problem.rows == (3,) and problem.got.startswith("'2024-01-05 t t t")


def test_a_far_placeholder_beside_nanoseconds_and_two_offsets_is_refused_by_row() -> None:
    """Nanoseconds in one value made pandas parse the mixed-offset column in datetime64[ns], where a "9999-12-31"
    beside them overflowed: OutOfBoundsDatetime, and `dealscore` ended with exit 1 (a dates audit)."""
    raw = make_deals(closed_at=["2024-01-20T10:00:00.123456789+01:00", "9999-12-31", "2024-07-01T10:00:00+02:00"],
                     created_at=["2024-01-05", "2024-02-01", "2024-03-01"], status=["won", "lost", "won"])
    problem = the_problem(bad_deals(raw), "deals", "closed_at")
    assert (problem.got, problem.rows) == ("'9999-12-31'", (2,))


def test_fractions_of_a_second_are_read_as_the_api_reads_them() -> None:
    """ISO 8601 writes a fraction with a comma too ("10:00:00,5"), which the API read and a file refused; and
    nanoseconds in one value made pandas parse the column in datetime64[ns], where a "9999-12-31" beside them did
    not fit and was refused as no ISO date at all rather than as out of range (a dates audit)."""
    forms = ["2024-12-01T10:00:00,5", "2024-12-01 10:00:00,5", "2024-12-01T23:30:00,123456789+05:00",
             "20241201T100000,25Z", "2024-12-01T10:00:00.1234567"]
    raw = pd.DataFrame({"deal_id": [f"D{i}" for i in range(len(forms))], "created_at": forms,
                        "status": ["won"] * len(forms)})
    deals = validate_deals(raw, for_training=True, today=TODAY)
    assert [d.date() for d in deals["created_at"]] == [parse_date(form) for form in forms]
    problem = the_problem(bad_deals(make_deals(created_at=["2024-01-05T10:00:00.123456789", "9999-12-31",
                                                           "2024-03-01"])), "deals", "created_at")
    assert (problem.expected, problem.got, problem.rows) == (
        "a date from 1970-01-01 to today (at most 2025-07-01, for a sender a time zone ahead)", "'9999-12-31'", (2,))


def test_statuses_are_matched_ignoring_case_and_spaces() -> None:
    deals = validate_deals(make_deals(status=[" Won", "LOST ", "Open"]), for_training=True, today=TODAY)
    assert deals["status"].tolist() == ["won", "lost", "open"]


def test_typed_input_from_parquet_or_sql_is_accepted() -> None:
    raw = make_deals(
        created_at=[pd.Timestamp("2024-01-05 10:00"), date(2024, 2, 1), pd.NaT],
        amount=[1000, 250.5, np.nan],
        deal_id=[1, 2, 3],
    )
    deals = validate_deals(raw, for_training=False, today=TODAY)
    assert deals["deal_id"].tolist() == ["1", "2", "3"]
    assert deals["created_at"][1] == pd.Timestamp("2024-02-01")
    assert deals["amount"][1] == 250.5


@pytest.mark.parametrize(
    ("column", "for_training", "why"),
    [("deal_id", False, "(required)"), ("created_at", True, "(required for training and client analytics)"),
     ("status", True, "(required for training and client analytics)")],
)
def test_missing_required_column(column: str, for_training: bool, why: str) -> None:
    error = bad_deals(make_deals().drop(columns=[column]), for_training=for_training)
    problem = the_problem(error, "deals", column)
    assert problem.expected == (f"a column '{column}' {why} (or the export's own name for it in the mapping "
                                "file's columns:)")
    assert problem.got.startswith("no such column (columns: deal_id") or problem.got.startswith(
        "no such column (columns: client_id"
    )
    assert problem.rows == ()


def test_repeated_column_names() -> None:
    raw = pd.concat([make_deals(), make_deals()[["deal_id"]]], axis=1)
    problem = the_problem(bad_deals(raw), "deals", "deal_id")
    assert (problem.expected, problem.got) == ("one column of this name", "2 columns")


def test_training_columns_are_optional_for_scoring() -> None:
    raw = make_deals().drop(columns=["status", "created_at"])
    deals = validate_deals(raw, for_training=False, today=TODAY)
    assert "status" not in deals


def test_unparseable_iso_dates() -> None:
    error = bad_deals(make_deals(created_at=["2024-01-05", "31/01/2024", "yesterday"]))
    problem = the_problem(error, "deals", "created_at")
    assert problem.expected == "a date like 2024-03-31 (ISO 8601)"
    assert problem.got == "'31/01/2024', 'yesterday'"
    assert (problem.rows, problem.count) == ((2, 3), 2)


def test_a_year_or_a_month_alone_is_no_date() -> None:
    """ISO 8601 parsing read "2021" as 2021-01-01 and "2021-03" as 2021-03-01, exit 0: a deal "of 2021" dated
    on New Year's Day, its history features as of that day."""
    error = bad_deals(make_deals(created_at=["2021", "2021-03", "2021-03-05"]))
    problem = the_problem(error, "deals", "created_at")
    assert problem.expected == "a date like 2024-03-31 (ISO 8601)"
    assert (problem.got, problem.rows) == ("'2021', '2021-03'", (1, 2))
    for month in ("2021/03", "2021/3", "2021.03", "2021 03"):  # other separators: the API refuses them too
        assert the_problem(bad_deals(make_deals(created_at=[month, "2021-03-05", "2021-03-06"])), "deals",
                           "created_at").rows == (1,), month


def test_dates_in_the_mapping_format() -> None:
    raw = make_deals(created_at=["05-Jan-24", "2024-02-01", "01-Mar-24"], closed_at=["20-Jan-24", None, None])
    error = bad_deals(raw, date_format="%d-%b-%y")
    problem = the_problem(error, "deals", "created_at")
    assert problem.expected == "a date like 31-Mar-24 (format '%d-%b-%y')"
    assert (problem.got, problem.rows) == ("'2024-02-01'", (2,))


def test_dates_outside_the_accepted_range() -> None:
    # Also beyond what datetime64[ns] holds; more edges in test_contract_edges.py.
    error = bad_deals(make_deals(created_at=["2024-01-05", "1500-01-01", "9999-12-31"]))
    problem = the_problem(error, "deals", "created_at")
    assert problem.expected == "a date from 1970-01-01 to today (at most 2025-07-01, for a sender a time zone ahead)"
    assert (problem.got, problem.rows) == ("'1500-01-01', '9999-12-31'", (2, 3))


def test_zoned_timestamps_beyond_the_calendar_are_refused_by_row_not_a_crash() -> None:
    """A Parquet timestamp with a named zone whose local time falls outside years 1-9999 (a "9999-12-31 23:59:59Z"
    placeholder stored in Moscow's zone is 10000-01-01 there) made quoting it raise NotImplementedError: `dealscore`
    ended with exit 1, "unexpected failure", instead of naming the column and row (a dates audit)."""
    instants = pd.DatetimeIndex([datetime(2024, 1, 5, 10, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
                                 datetime(1, 1, 1, 2, tzinfo=UTC)]).as_unit("us")
    for zone, got in (("Europe/Moscow", "'10000-01-01 02:59:59 Europe/Moscow', '0001-01-01 04:30:17+02:30:17'"),
                      ("America/New_York", "'9999-12-31 18:59:59-05:00', '0000-12-31 21:03:58 America/New_York'")):
        raw = make_deals()
        raw["created_at"] = instants.tz_convert(zone)
        problem = the_problem(bad_deals(raw, for_training=False), "deals", "created_at")
        assert problem.expected.startswith("a date from 1970-01-01 to today")
        assert (problem.got, problem.rows) == (got, (2, 3))


def test_unknown_status_values() -> None:
    error = bad_deals(make_deals(status=["won", "pending", "Negotiation"]))
    problem = the_problem(error, "deals", "status")
    assert problem.expected.startswith("one of won, lost, open (map the export's own values")
    assert (problem.got, problem.rows, problem.count) == ("'pending', 'Negotiation'", (2, 3), 2)


def test_bad_values_are_quoted_from_every_bad_row_not_only_the_first_hundred() -> None:
    """An export whose first hundred bad statuses were all 'Closed Lost' quoted that one alone: its 'in progress'
    deals, further down, were said only once the first value was fixed and training refused again."""
    statuses = ["Closed Lost"] * 150 + ["won"] * 20 + ["in progress"] * 30
    n = len(statuses)
    raw = make_deals(**{"deal_id": [f"D{i}" for i in range(n)], "client_id": [None] * n,
                        "created_at": ["2024-01-05"] * n, "closed_at": [None] * n, "status": statuses,
                        "amount": ["1"] * n, "product": ["Cloud"] * n, "effort_hours": ["1"] * n})
    problem = the_problem(bad_deals(raw), "deals", "status")
    assert (problem.got, problem.count) == ("'Closed Lost', 'in progress'", 180)


def test_empty_status_is_a_problem_for_training_only() -> None:
    raw = make_deals(status=["won", " ", "open"])
    problem = the_problem(bad_deals(raw), "deals", "status")
    assert (problem.expected, problem.got, problem.rows) == (
        "a non-empty status (required for training and client analytics)", "empty", (2,)
    )
    assert np.isnan(validate_deals(raw, for_training=False, today=TODAY)["status"][1])


def test_duplicate_deal_ids() -> None:
    problem = the_problem(bad_deals(make_deals(deal_id=["D1", "D2", "D1"])), "deals", "deal_id")
    assert (problem.expected, problem.got, problem.rows) == ("unique deal_id values", "repeated 'D1'", (1, 3))


def test_duplicate_client_ids() -> None:
    with pytest.raises(ContractViolation, match="^clients table") as error:
        validate_clients(make_clients(client_id=["C1", " C1"]), today=TODAY)
    problem = the_problem(error, "clients", "client_id")
    assert (problem.expected, problem.got) == ("unique client_id values", "repeated 'C1'")
    assert problem.rows == (1, 2)


def test_empty_ids() -> None:
    problem = the_problem(bad_deals(make_deals(deal_id=["D1", "", None])), "deals", "deal_id")
    assert (problem.expected, problem.got) == ("a non-empty deal_id (required)", "empty")
    assert problem.rows == (2, 3)
    with pytest.raises(ContractViolation) as error:
        validate_clients(make_clients(client_id=["C1", "  "]), today=TODAY)
    assert the_problem(error, "clients", "client_id").rows == (2,)


def test_a_list_in_a_contract_column_is_refused_not_read_as_its_python_text() -> None:
    """A Parquet list column or a PostgreSQL array: a client's products in one row had been one product named
    "['acquiring' 'payroll']", trained into the profiles and offered as a gap (a database-inputs review)."""
    holdings = pd.DataFrame({"client_id": ["C1", "C2", "C3"],
                             "product": [np.array(["acquiring", "payroll"]), "deposit", ["leasing"]]})
    with pytest.raises(ContractViolation) as error:
        validate_holdings(holdings, known_clients=None, today=TODAY)
    problem = the_problem(error, "holdings", "product")
    assert problem.expected.startswith("one value per row (a list, array, object or bytes value is none")
    assert (problem.got, problem.rows) == ("ndarray values such as ['acquiring', 'payroll']", (1, 3))
    problem = the_problem(bad_deals(make_deals(client_id=["C1", {"id": "C2"}, b"C3"])), "deals", "client_id")
    assert (problem.got, problem.rows) == ("dict values such as {'id': 'C2'}", (2, 3))
    # Beside integers (pandas calls that column "mixed-integer", not "mixed": a diff review).
    problem = the_problem(bad_deals(make_deals(product=[7, ["acquiring", "payroll"], "x"])), "deals", "product")
    assert (problem.got, problem.rows) == ("list values such as ['acquiring', 'payroll']", (2,))


def test_deals_without_client_id_are_fine() -> None:
    deals = validate_deals(make_deals(client_id=[None, "", "C1"]), for_training=True, today=TODAY)
    assert deals["client_id"].isna().sum() == 2


@pytest.mark.parametrize(("column", "expected"), [("amount", "a number from 0 to 1000000000000000"),
                                                  ("effort_hours", "a number >= 0")])
def test_negative_deal_numbers(column: str, expected: str) -> None:
    problem = the_problem(bad_deals(make_deals(**{column: ["1", "-5", "-0.5"]})), "deals", column)
    assert (problem.expected, problem.got, problem.rows) == (expected, "'-5', '-0.5'", (2, 3))


def test_negative_revenue() -> None:
    with pytest.raises(ContractViolation, match="^holdings table") as error:
        validate_holdings(make_holdings(revenue=["-1", "3"]), known_clients=None, today=TODAY)
    problem = the_problem(error, "holdings", "revenue")
    assert (problem.expected, problem.got, problem.rows) == ("a number from 0 to 1000000000000000", "'-1'", (1,))


def test_money_beyond_a_quadrillion_is_refused() -> None:
    """Amounts are summed into a client's won money and the grades' realised value: two near the float
    limit made those sums infinite (an API review). 1e15 itself is money; more is a unit slip or garbage."""
    problem = the_problem(bad_deals(make_deals(amount=["1e15", "1.7e308", "2e15"])), "deals", "amount")
    assert (problem.expected, problem.got, problem.rows) == (
        "a number from 0 to 1000000000000000", "'1.7e308', '2e15'", (2, 3))
    with pytest.raises(ContractViolation, match="^holdings table") as error:
        validate_holdings(make_holdings(revenue=["3", "1e300"]), known_clients=None, today=TODAY)
    assert the_problem(error, "holdings", "revenue").rows == (2,)


def test_a_product_the_holdings_spell_several_ways_is_one_product_under_its_commoner_spelling() -> None:
    """A holdings export with "Credit Line" in some rows and "credit_line" in others had two products in the
    profiles' catalogue, and gap lists offered a client holding one spelling the other."""
    raw = make_holdings(client_id=["C1", "C2", "C3", "C4", "C5"],
                        product=["Credit Line", "credit_line", "credit-line", "credit_line", "Cloud"],
                        revenue=["1", "2", "3", "4", "5"])
    holdings = validate_holdings(raw, known_clients=None, today=TODAY)
    assert holdings["product"].tolist() == ["credit_line", "credit_line", "credit_line", "credit_line", "Cloud"]
    merged = holdings.attrs[MERGED_SPELLINGS_ATTR]
    assert merged == {"Credit Line": "credit_line", "credit-line": "credit_line"}
    note = merged_spellings_note(merged)
    assert note is not None and "'Credit Line' as 'credit_line', 'credit-line' as 'credit_line'" in note
    assert validate_holdings(make_holdings(), known_clients=None, today=TODAY).attrs[MERGED_SPELLINGS_ATTR] == {}
    # One client holding one product in two spellings is a repeated pair, as an exact repeat is (its income had
    # counted twice: +14% on an audit's export).
    with pytest.raises(ContractViolation) as error:
        validate_holdings(make_holdings(client_id=["C1", "C1"], product=["Credit Line", "credit_line"]),
                          known_clients=None, today=TODAY)
    problem = the_problem(error, "holdings", "product")
    assert problem.expected == "one row per (client_id, product)" and problem.rows == (1, 2)


def test_non_numeric_and_non_finite_numbers() -> None:
    error = bad_deals(make_deals(amount=["1,000", "inf", "Infinity"], effort_hours=["2", "two", "-inf"]))
    amount = the_problem(error, "deals", "amount")
    # "1,000" is formatted money: the message says what to change.
    assert (amount.expected, amount.got) == ("a finite number (digits with a point for decimals: no thousands "
                                             "separators, spaces or currency signs)", "'1,000', 'inf', 'Infinity'")
    assert amount.rows == (1, 2, 3)
    hours = the_problem(error, "deals", "effort_hours")
    assert (hours.expected, hours.got, hours.rows) == ("a finite number", "'two', '-inf'", (2, 3))
    # A decimal comma (two digits after it, not a thousands group) points to the mapping file's csv format.
    comma = the_problem(bad_deals(make_deals(amount=["2638,21", "10", "12"])), "deals", "amount")
    assert comma.expected.endswith("; decimal commas read with the mapping file's csv: {decimal: ','})")


def test_closed_before_created() -> None:
    raw = make_deals(closed_at=["2024-01-01", None, None])
    problem = the_problem(bad_deals(raw), "deals", "closed_at")
    assert problem.expected == "a date on or after created_at"
    assert (problem.got, problem.rows) == ("'2024-01-01' before created_at '2024-01-05'", (1,))


def test_dates_in_the_future() -> None:
    # Tomorrow is a sender's today a time zone ahead (the API accepts it too, so a logged deal stays trainable);
    # the day after is the future.
    error = bad_deals(make_deals(created_at=["2024-01-05", "2025-07-02", "2025-07-01"]))
    problem = the_problem(error, "deals", "created_at")
    assert (problem.expected, problem.got, problem.rows) == (
        "a date from 1970-01-01 to today (at most 2025-07-01, for a sender a time zone ahead)", "'2025-07-02'", (2,)
    )
    with pytest.raises(ContractViolation) as clients_error:
        validate_clients(make_clients(since=["2030-01-01", None]), today=TODAY)
    assert the_problem(clients_error, "clients", "since").rows == (1,)


def test_closed_deals_may_lack_closed_at() -> None:
    deals = validate_deals(make_deals(closed_at=[None, None, None]), for_training=True, today=TODAY)
    assert deals["closed_at"].isna().all()


def test_open_deal_with_closed_at() -> None:
    problem = the_problem(bad_deals(make_deals(closed_at=[None, None, "2024-04-01"])), "deals", "closed_at")
    assert (problem.expected, problem.got) == ("no closed_at for an open deal", "'2024-04-01'")
    assert problem.rows == (3,)


def test_text_too_long() -> None:
    too_long = "x" * (MAX_TEXT_LENGTH + 1)
    error = bad_deals(make_deals(product=["Cloud", too_long, "Cloud"], Note=["a", "b", "y" * 500]))
    problem = the_problem(error, "deals", "product")
    assert problem.expected == f"text of at most {MAX_TEXT_LENGTH} characters"
    assert problem.got == f"'{'x' * 40}...' ({MAX_TEXT_LENGTH + 1} characters)"
    assert problem.rows == (2,)
    assert the_problem(error, "deals", "Note").rows == (3,)  # extra text columns too


def test_holdings_of_unknown_clients() -> None:
    raw = make_holdings(client_id=["C1", "C9"])
    with pytest.raises(ContractViolation) as error:
        validate_holdings(raw, known_clients={"C1", "C2"}, today=TODAY)
    problem = the_problem(error, "holdings", "client_id")
    assert (problem.expected, problem.got) == ("a client_id from the clients table", "'C9'")
    assert problem.rows == (2,)
    assert len(validate_holdings(raw, known_clients=None, today=TODAY)) == 2  # no clients table: no check


def test_deals_of_unknown_clients_are_prospects_not_errors() -> None:
    raw = make_deals(client_id=["C1", "P7", None])
    dataset = dataset_from_frames(raw, make_clients(), make_holdings(), for_training=True, today=TODAY)
    assert dataset.summary == {
        "deals": 3, "deals_without_client": 1, "clients": 2, "prospect_deals": 1, "holdings": 2,
    }


def test_rows_show_the_first_five_and_a_count() -> None:
    raw = pd.DataFrame({"deal_id": [f"D{i}" for i in range(8)], "amount": ["-1"] * 7 + ["1"]})
    problem = the_problem(bad_deals(raw, for_training=False), "deals", "amount")
    assert (problem.rows, problem.count) == ((1, 2, 3, 4, 5), 7)
    assert problem.describe() == (
        "deals.amount: expected a number from 0 to 1000000000000000, got '-1' (rows 1, 2, 3, 4, 5 and 2 more)"
    )


def test_quoted_values_are_cut_at_40_characters() -> None:
    problem = the_problem(bad_deals(make_deals(status=["won", "s" * 60, "open"])), "deals", "status")
    assert problem.got == f"'{'s' * 40}...'"


def test_every_problem_is_reported_not_just_the_first() -> None:
    raw = make_deals(deal_id=["D1", "D1", ""], status=["won", "maybe", "open"], amount=["-1", "x", None])
    problems = bad_deals(raw).value.problems
    assert {(p.field, p.expected) for p in problems} == {
        ("deal_id", "a non-empty deal_id (required)"),
        ("deal_id", "unique deal_id values"),
        ("status", "one of won, lost, open (map the export's own values to them in the mapping file's "
                   "status_values; \"*\" catches the rest)"),
        ("amount", "a finite number"),
        ("amount", "a number from 0 to 1000000000000000"),
    }


def test_extra_columns_are_kept_and_their_kinds_reported() -> None:
    raw = make_deals(Seats=["1", "2", None], Region=["North", "3", None], Ratio=["1", "inf", "2"])
    dataset = dataset_from_frames(raw, make_clients(Tier=["gold", "silver"]), for_training=True, today=TODAY)
    assert dataset.extra_columns == {
        "Seats": "number", "Region": "text", "Ratio": "text", "clients.Tier": "text",
    }
    assert dataset.deals["Ratio"].tolist() == ["1", "inf", "2"]


def test_holdings_are_derived_from_won_deals_when_absent() -> None:
    raw = make_deals(
        deal_id=["D1", "D2", "D3", "D4"], client_id=["C1", "C1", "C2", None],
        created_at=["2024-01-05", "2024-02-01", "2024-03-01", "2024-03-02"],
        closed_at=["2024-01-20", None, None, None], status=["won", "won", "lost", "won"],
        amount=["1000", "500", "70", "9"], product=["Cloud", "Cloud", "Support", "Cloud"],
        effort_hours=["1", "1", "1", "1"],
    )
    dataset = dataset_from_frames(raw, make_clients(), for_training=True, today=TODAY)
    assert dataset.holdings_derived
    assert dataset.holdings is not None
    assert dataset.holdings.to_dict("records") == [
        {"client_id": "C1", "product": "Cloud", "since": pd.Timestamp("2024-01-20"), "revenue": 1500.0},
    ]
    given = dataset_from_frames(raw, make_clients(), make_holdings(), for_training=True, today=TODAY)
    assert not given.holdings_derived


def test_problems_in_different_tables_come_back_together() -> None:
    deals = make_deals(amount=["-1", "1", "2"])
    clients = make_clients(client_id=["C1", "C1"])
    holdings = make_holdings(client_id=["C1", "C404"], since=["2024-01-01", "someday"])
    with pytest.raises(ContractViolation) as error:
        dataset_from_frames(deals, clients, holdings, for_training=True, today=TODAY)
    assert str(error.value) == "input data breaks the data contract (deals, clients, holdings): 4 problems"
    found = {(p.table, p.field, p.rows) for p in error.value.problems}
    assert found == {
        ("deals", "amount", (1,)),
        ("clients", "client_id", (1, 2)),
        ("holdings", "client_id", (2,)),
        ("holdings", "since", (2,)),
    }


def test_messages_count_in_words() -> None:
    from model.errors import Problem, counted

    assert (counted(1, "problem"), counted(4, "problem")) == ("1 problem", "4 problems")
    assert Problem("amount", "a number", "'x'", table="deals", rows=(6,), count=1).describe().endswith("(row 6)")
    assert Problem("amount", "a number", "'x'", table="deals", rows=(6, 9), count=7).describe().endswith(
        "(rows 6, 9 and 5 more)")


def test_a_null_marker_id_is_reported_once_as_missing_not_also_as_repeated() -> None:
    error = bad_deals(make_deals(deal_id=["NULL", "NULL", "D3"]))
    fields = [(p.field, p.expected) for p in error.value.problems]
    assert fields == [("deal_id", "a non-empty deal_id (required)")]


def test_text_of_exactly_the_longest_length_is_taken() -> None:
    longest = "x" * MAX_TEXT_LENGTH
    deals = validate_deals(make_deals(product=["Cloud", longest, "Cloud"], Note=["a", "b", longest]),
                           for_training=True, today=TODAY)
    assert deals["product"].tolist()[1] == longest and deals["Note"].tolist()[2] == longest


@pytest.mark.parametrize("form", ["2025/\u0663/\u0661", "2025-\u0660\u0663-01", "2025-03-01T\u0661\u0660:00",
                                  "2025/03/01 \u0661\u0660:00"])
def test_a_date_with_digits_of_another_script_is_refused_by_the_api_and_in_a_file(form: str) -> None:
    """ISO 8601 dates are ASCII digits, and so were all the forms either path read: the year-first rewrite
    (model.records.iso_text) matched any Unicode digit after the year and wrote int() of it, so "2025/\u0663/\u0661"
    (Arabic-Indic 3 and 1) was read as 2025-03-01 while "\u0662\u0660\u0662\u0665-03-01" was refused."""
    with pytest.raises(ValueError):
        parse_date(form)
    raw = pd.DataFrame({"deal_id": ["D1"], "created_at": [form]})
    with pytest.raises(ContractViolation) as refused:
        validate_deals(raw, for_training=False, today=TODAY)
    assert [p.field for p in refused.value.problems] == ["created_at"]
