"""The mapping file: a CRM's export becomes the canonical tables; a bad mapping names the wrong key."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from model.dataset import dataset_from_frames, load_dataset
from model.errors import ContractViolation
from model.mapping import EXCLUDED_ATTR, NEAR_MISS_ATTR, Mapping, TableMapping, apply_mapping, load_mapping

TODAY = date(2025, 6, 30)

CRM_EXPORT = """\
Opportunity ID,Deal Date,Stage,Deal Cost,Solution Type,Manager Name,VP Name,Sector
OPP-1,27-Mar-12,Won,150000.00,Solution 7,Gopa Trilochana,Ekta Zutshi,Sector 24
OPP-2,25-Sep-12,Closed Lost,744705.88,Solution 7,Gopa Trilochana,Ekta Zutshi,Sector 24
OPP-3,01-Aug-11, in progress ,60000.00,Solution 59,Russell Dahlen,Ekta Zutshi,Sector 20
OPP-4,28-Apr-11,closed won,0.00,Solution 59,Russell Dahlen,Ekta Zutshi,
"""

CRM_MAPPING = """\
deals:
  columns: {deal_id: "Opportunity ID", created_at: "Deal Date", status: "Stage", amount: "Deal Cost",
            product: "Solution Type", manager: "Manager Name"}
  status_values: {won: ["Won", "Closed Won"], lost: ["Lost", "Closed Lost"], open: ["*"]}
  date_format: "%d-%b-%y"
  exclude: ["VP Name"]
"""


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_crm_export_becomes_canonical_deals(tmp_path: Path) -> None:
    deals_csv = write(tmp_path / "export.csv", CRM_EXPORT)
    mapping = write(tmp_path / "mapping.yaml", CRM_MAPPING)

    dataset = load_dataset(deals_csv, mapping=mapping, for_training=True, today=TODAY)
    deals = dataset.deals

    assert list(deals.columns) == [
        "deal_id", "created_at", "status", "amount", "product", "manager", "Sector",
    ]
    assert deals["deal_id"].tolist() == ["OPP-1", "OPP-2", "OPP-3", "OPP-4"]
    assert deals["created_at"].tolist() == [
        pd.Timestamp("2012-03-27"), pd.Timestamp("2012-09-25"), pd.Timestamp("2011-08-01"),
        pd.Timestamp("2011-04-28"),
    ]
    assert deals["status"].tolist() == ["won", "lost", "open", "won"]  # "*" caught " in progress "
    assert deals["amount"].tolist() == [150000.0, 744705.88, 60000.0, 0.0]
    assert dataset.excluded_columns == ("VP Name",)
    assert dataset.extra_columns == {"Sector": "text"}
    assert not dataset.holdings_derived  # no client_id: nothing to derive holdings from


def test_each_table_has_its_own_section_and_date_format(tmp_path: Path) -> None:
    deals_csv = write(tmp_path / "deals.csv", "Id,Account,Opened,Result\nD1,A1,2024-01-05,won\n")
    clients_csv = write(tmp_path / "clients.csv", "Account,Sector,Customer Since\nA1,Retail,05/01/2020\n")
    holdings_csv = write(tmp_path / "holdings.csv", "Account,Product,Start Date\nA1,Cloud,2021-02-03\n")
    mapping = write(tmp_path / "mapping.yaml", """\
deals:
  columns: {deal_id: Id, client_id: Account, created_at: Opened, status: Result}
clients:
  columns: {client_id: Account, industry: Sector, since: "Customer Since"}
  date_format: "%d/%m/%Y"
holdings:
  columns: {client_id: Account, product: Product, since: "Start Date"}
""")
    dataset = load_dataset(deals_csv, clients_csv, holdings_csv, mapping, for_training=True, today=TODAY)
    assert dataset.clients is not None and dataset.holdings is not None
    assert dataset.clients.to_dict("records") == [
        {"client_id": "A1", "industry": "Retail", "since": pd.Timestamp("2020-01-05")},
    ]
    assert dataset.holdings["since"].tolist() == [pd.Timestamp("2021-02-03")]


def test_a_date_format_with_a_utc_offset_is_taken_and_keeps_each_values_own_day(tmp_path: Path) -> None:
    """'%d/%m/%Y %H:%M %z' names a day, a month and a year, but the mapping check wrote and read back a date without a
    zone, whose %z is empty, and refused it: an export of '01/03/2025 23:30 -1100' could not be read at all (a dates
    audit). Each value keeps its own wall-clock day, as an ISO value with an offset does."""
    deals_csv = write(tmp_path / "deals.csv", "deal_id,created_at,status\nD1,01/03/2024 23:30 -1100,won\n"
                                              "D2,02/03/2024 00:30 +1400,lost\nD3,03/03/2024 12:00 +0000,won\n")
    mapping = write(tmp_path / "mapping.yaml", 'deals:\n  date_format: "%d/%m/%Y %H:%M %z"\n')
    dataset = load_dataset(deals_csv, None, None, mapping, for_training=True, today=TODAY)
    assert [d.date() for d in dataset.deals["created_at"]] == [date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)]


def test_status_values_without_wildcard_leave_unknown_values_for_validation(tmp_path: Path) -> None:
    mapping = Mapping({"deals": TableMapping(
        columns={"status": "Stage"}, status_values={"won": ("Won",), "lost": ("Lost",)}, exclude=("Owner",),
    )})
    raw = pd.DataFrame({
        "deal_id": ["1", "2", "3"], "Stage": [" WON", "Pending", None], "Owner": ["a", "b", "c"],
    })
    mapped = apply_mapping("deals", raw, mapping)
    assert mapped["status"].tolist()[:2] == ["won", "Pending"]
    assert pd.isna(mapped["status"][2])
    # "N/A" (a SQL dump's NULL) is no status, not one a wildcard decides.
    wildcard = Mapping({"deals": TableMapping(columns={"status": "Stage"},
                                              status_values={"won": ("Won",), "open": ("*",)})})
    statuses = apply_mapping("deals", raw.assign(Stage=["Won", "N/A", "Pending"]), wildcard)["status"].tolist()
    assert statuses[0] == "won" and pd.isna(statuses[1]) and statuses[2] == "open"
    # Nor is a blank cell: it is left for validation to report, not made open.
    assert apply_mapping("deals", raw.assign(Stage=["Won", "  ", "Pending"]), wildcard)["status"].tolist() == [
        "won", "  ", "open"]
    # Unless the mapping lists it: then it is what the mapping says.
    listed = Mapping({"deals": TableMapping(columns={"status": "Stage"},
                                            status_values={"won": ("Won",), "lost": ("None",), "open": ("*",)})})
    assert apply_mapping("deals", raw.assign(Stage=["Won", "None", "N/A"]), listed)["status"].tolist()[:2] == [
        "won", "lost"]
    assert list(mapped.columns) == ["deal_id", "status"]
    assert mapped.attrs[EXCLUDED_ATTR] == ("Owner",)


@pytest.mark.parametrize(("stage", "listed"), [
    ([1, 0, 2, None], "{won: [1], lost: [0], open: [2]}"),
    ([1, 0, 2, None], "{won: ['1'], lost: ['0'], open: ['2']}"),
    ([1.0, 0.0, 2.0, float("nan")], "{won: [1], lost: [0], open: ['*']}"),
    ([True, False, None, None], "{won: [true], lost: [false]}"),
    ([True, False, None, None], "{won: ['True'], lost: ['false']}"),
    (["Yes", "No", "Maybe", None], "{won: [Yes], lost: [No], open: ['*']}"),  # YAML reads Yes as true
    (["yes", "NO", "Maybe", None], "{won: [yes], lost: [no], open: ['*']}"),
])
def test_a_status_stored_as_numbers_or_booleans_maps_by_its_text(tmp_path: Path, stage: list[object],
                                                                  listed: str) -> None:
    """A Parquet Int64 or a SQL boolean status column: listed as "1" it was refused as '1', and a YAML 1
    as "not a list of text"."""
    mapping = load_mapping(write(tmp_path / "m.yaml", f"deals:\n  columns: {{status: Stage}}\n"
                                                        f"  status_values: {listed}\n"))
    raw = pd.DataFrame({"deal_id": ["a", "b", "c", "d"], "Stage": pd.Series(stage, dtype=object)})
    statuses = apply_mapping("deals", raw, mapping)["status"].tolist()
    assert statuses[:2] == ["won", "lost"] and pd.isna(statuses[3])
    assert statuses[2] == "open" if stage[2] is not None else pd.isna(statuses[2])


@pytest.mark.parametrize("listed", ["{won: [true], lost: [false], open: ['*']}",
                                    "{won: [true], lost: [false], open: ['null']}"])
def test_a_true_false_status_with_gaps_says_status_values_cannot_fill_them(tmp_path: Path, listed: str) -> None:
    """A nullable boolean status (true won, false lost, null still open) maps its values, and its gaps stay gaps,
    as the mapping's missing values always do: training refused them as "expected a non-empty status, got empty"
    although the mapping listed "*" (or 'null') under open, with no word on why that did not take them."""
    deals = pd.DataFrame({"deal_id": ["D1", "D2", "D3", "D4"], "created_at": ["2024-01-05"] * 4,
                          "status": pd.array([True, False, None, True], dtype="boolean")})
    with pytest.raises(ContractViolation) as unmapped:
        dataset_from_frames(deals, for_training=True, today=TODAY)
    unknown = next(p for p in unmapped.value.problems if p.got != "empty")
    assert (unknown.field, unknown.got, unknown.rows) == ("status", "'True', 'False'", (1, 2, 4))
    assert "in the mapping file's status_values" in unknown.expected

    mapping = load_mapping(write(tmp_path / "m.yaml", f"deals:\n  status_values: {listed}\n"))
    with pytest.raises(ContractViolation) as mapped:
        dataset_from_frames(deals, mapping=mapping, for_training=True, today=TODAY)
    (empty,) = mapped.value.problems
    assert (empty.field, empty.got, empty.rows) == ("status", "empty", (3,))
    assert empty.expected == ("a non-empty status (required for training and client analytics), which the mapping "
                              "file's status_values cannot give: they map values (\"*\" too), never an empty cell; "
                              "fill it in the export (COALESCE in a query)")
    scored = dataset_from_frames(deals, mapping=mapping, for_training=False, today=TODAY).deals["status"]
    assert scored.tolist()[:2] == ["won", "lost"] and pd.isna(scored[2])  # scoring needs no status


def test_mapping_a_column_that_also_came_under_its_canonical_name_is_refused() -> None:
    mapping = Mapping({"deals": TableMapping(columns={"deal_id": "Opportunity ID"})})
    raw = pd.DataFrame({"deal_id": ["1"], "Opportunity ID": ["OPP-1"]})
    with pytest.raises(ContractViolation) as error:
        apply_mapping("deals", raw, mapping)
    (problem,) = error.value.problems
    assert (problem.table, problem.field, problem.got) == ("deals", "deal_id", "both")


@pytest.mark.parametrize(
    ("text", "field", "expected", "got"),
    [
        ("dealz:\n  columns: {deal_id: Id}\n", "dealz",
         "a table name, one of deals, clients, holdings", "'dealz'"),
        ("deals:\n  colums: {deal_id: Id}\n", "deals.colums",
         "one of columns, status_values, date_format, exclude, csv", "'colums'"),
        ("deals:\n  columns: {deal_idx: Id}\n", "deals.columns.deal_idx",
         "a deals column, one of deal_id, client_id, created_at, closed_at, status, amount, product, "
         "manager, effort_hours", "'deal_idx'"),
        ("clients:\n  columns: {amount: Cost}\n", "clients.columns.amount",
         "a clients column, one of client_id, industry, size, region, since", "'amount'"),
        ("deals:\n  columns: {deal_id: Id, client_id: Id}\n", "deals.columns.client_id",
         "a source column not mapped already", "'Id' mapped twice"),
        ("deals:\n  status_values: {closed: [Done]}\n", "deals.status_values.closed",
         "a status, one of won, lost, open", "'closed'"),
        ("deals:\n  status_values: {won: [Done], lost: [done]}\n", "deals.status_values.lost",
         "each source value under one status only", "'done' also under won"),
        ("clients:\n  status_values: {won: [Done]}\n", "clients.status_values",
         "no status_values (the clients table has no status)", "some"),
        ("deals:\n  status_values: {won: [[1, 2]]}\n", "deals.status_values.won",
         "a list of source values (text, numbers or true/false)", "a list holding a list"),
        ("deals:\n  csv: {separator: ';;'}\n", "deals.csv.separator",
         "one character between columns, like ',' or ';' (a tab: \"\\t\")", "';;'"),
        ("deals:\n  csv: {decimal: ';', separator: ';'}\n", "deals.csv.decimal", "'.' or ','", "';'"),
        ("deals:\n  csv: {encoding: klingon}\n", "deals.csv.encoding",
         "a text encoding Python knows, like 'utf-8', 'cp1252' or 'latin-1'", "'klingon'"),
        ("deals:\n  csv: {sep: ';'}\n", "deals.csv.sep", "one of separator, decimal, encoding", "'sep'"),
        ("deals:\n  date_format: '%H:%M'\n", "deals.date_format",
         "a strftime date format with day, month and year, like '%d-%b-%y'", "'%H:%M'"),
        ("deals:\n  exclude: {a: b}\n", "deals.exclude", "a list of source column names", "a dict"),
        # Excluded before renaming, the column was gone: a mapped amount trained no amount, without a word.
        ("deals:\n  columns: {amount: Deal Cost}\n  exclude: [Deal Cost]\n", "deals.exclude",
         "source columns not mapped under columns (it maps 'Deal Cost' to amount): map it or exclude it, not both",
         "'Deal Cost'"),
        ("- deals\n", "mapping file", "a YAML mapping of table names", "a list"),
    ],
)
def test_bad_mapping_files_name_the_key(
    tmp_path: Path, text: str, field: str, expected: str, got: str
) -> None:
    path = write(tmp_path / "mapping.yaml", text)
    with pytest.raises(ContractViolation, match=r"^mapping file '.*' is invalid: 1 problem") as error:
        load_mapping(path)
    (problem,) = error.value.problems
    assert (problem.field, problem.expected, problem.got) == (field, expected, got)


@pytest.mark.parametrize("text", [
    "deals:\n  columns: {deal_id: Id, amount: Cost}\n  date_format: '%d.%m.%Y'\n  columns: {deal_id: Id}\n",
    "deals:\n  columns: {deal_id: Id}\ndeals:\n  columns: {amount: Cost}\n",
])
def test_a_key_given_twice_is_refused_not_overridden(tmp_path: Path, text: str) -> None:
    """YAML keeps the last of two equal keys: a second `columns:` dropped the first, amount mapping and all, and
    the model trained without an amount (a CLI review)."""
    with pytest.raises(ContractViolation, match="not valid YAML") as error:
        load_mapping(write(tmp_path / "mapping.yaml", text))
    (problem,) = error.value.problems
    assert "found the key" in problem.got and "twice" in problem.got and "line" in problem.got


@pytest.mark.parametrize("header", ["Amount", " amount ", "AMOUNT"])
def test_a_contract_column_spelt_otherwise_is_said_when_training(header: str) -> None:
    """A CRM export with capitalised headers trained with no amount, no client history and an AUC of 0.750 for
    0.829, exit 0, without a word (a CLI review). Such columns stay extra features, as the contract says (a model
    trained with one must score its own export), and training says what they may be."""
    raw = pd.DataFrame({"deal_id": ["1", "2"], header: ["10", "20"], "Client ID": ["C1", "C2"],
                        "created_at": ["2024-01-01", "2024-01-02"], "status": ["won", "lost"]})
    assert apply_mapping("deals", raw, Mapping()).attrs[NEAR_MISS_ATTR] == {header: "amount", "Client ID": "client_id"}
    dataset = dataset_from_frames(raw, None, None, for_training=True, today=date(2025, 1, 1))
    assert dataset.near_miss_columns == {f"deals.{header}": "amount", "deals.Client ID": "client_id"}
    assert dataset.near_miss_note() == (
        f"columns named as contract columns but for case or spaces, trained as extra features: 'deals.Client ID' "
        f"(client_id?), 'deals.{header}' (amount?); if they are, rename them or map them (columns: "
        "{client_id: 'Client ID'})")
    # Mapped, or with the contract's own column beside it, it is a column like any other.
    mapped = apply_mapping("deals", raw, Mapping({"deals": TableMapping(columns={"amount": header,
                                                                                 "client_id": "Client ID"})}))
    assert {"amount", "client_id"} <= set(mapped.columns) and mapped.attrs[NEAR_MISS_ATTR] == {}
    beside = apply_mapping("deals", raw.assign(amount="5", client_id="C9"), Mapping())
    assert header in beside.columns and beside.attrs[NEAR_MISS_ATTR] == {}


def test_yaml_merge_keys_still_read(tmp_path: Path) -> None:
    """The loader that refuses a key given twice read `<<: *common` as a key of its own and refused the file."""
    text = ("deals: &common\n  columns: {deal_id: Id}\n  csv: {separator: ';'}\n"
            "clients:\n  <<: *common\n  columns: {client_id: Id}\n")
    mapping = load_mapping(write(tmp_path / "mapping.yaml", text))
    assert mapping.table("clients").columns == {"client_id": "Id"}  # beside the merge, its own key wins
    assert mapping.table("clients").csv.separator == ";"  # merged


def test_every_mistake_in_a_mapping_file_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "mapping.yaml", "deals:\n  columns: {dealid: Id}\n  date_fmt: x\nprospects: {}\n")
    with pytest.raises(ContractViolation) as error:
        load_mapping(path)
    assert [p.field for p in error.value.problems] == ["deals.date_fmt", "deals.columns.dealid", "prospects"]


def test_missing_or_unreadable_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(ContractViolation, match="mapping file not found") as missing:
        load_mapping(tmp_path / "nope.yaml")
    assert missing.value.problems[0].got == f"no file at '{tmp_path / 'nope.yaml'}'"

    broken = write(tmp_path / "broken.yaml", "deals:\n  columns: {deal_id: [\n")
    with pytest.raises(ContractViolation, match="not valid YAML") as error:
        load_mapping(broken)
    assert error.value.problems[0].field == "mapping file"
    assert "line" in error.value.problems[0].got


def test_empty_mapping_file_maps_nothing(tmp_path: Path) -> None:
    assert load_mapping(write(tmp_path / "mapping.yaml", "")) == Mapping()


def test_a_bad_mapping_and_a_missing_source_are_reported_together(tmp_path: Path) -> None:
    mapping = write(tmp_path / "mapping.yaml", "deals:\n  columns: {dealid: Id}\n")
    with pytest.raises(ContractViolation, match="^cannot read the input: 2 problem") as error:
        load_dataset(str(tmp_path / "missing.csv"), mapping=mapping, for_training=True)
    assert [p.field for p in error.value.problems] == ["deals.columns.dealid", "deals source"]


def test_a_broken_mapping_is_not_blamed_on_the_files_it_would_have_read(tmp_path: Path) -> None:
    """One mistyped key beside `csv: {separator: ";"}` had the file read with commas and called "separated by
    semicolons" (and, with its encoding, "not UTF-8") beside the real problem."""
    export = write(tmp_path / "export.csv", CRM_EXPORT.replace(",", ";"))
    mapping = write(tmp_path / "mapping.yaml", CRM_MAPPING.replace("status_values", "status_value")
                    + '  csv: {separator: ";"}\n')
    with pytest.raises(ContractViolation, match="^cannot read the input: 1 problem") as error:
        load_dataset(export, mapping=mapping, for_training=True, today=TODAY)
    assert [p.field for p in error.value.problems] == ["deals.status_value"]
    fixed = write(tmp_path / "fixed.yaml", CRM_MAPPING + '  csv: {separator: ";"}\n')
    assert len(load_dataset(export, mapping=fixed, for_training=True, today=TODAY).deals) == 4


def test_a_mapped_or_excluded_column_misspelt_is_refused_with_the_likely_name() -> None:
    """A typo once left the product unmapped (trained as an unknown extra column) without a word."""
    mapping = Mapping({"deals": TableMapping(columns={"deal_id": "Opportunity ID", "product": "Solution Typ",
                                                      "status": "Stage"},
                                             exclude=["VP Nmae", "Region Code"])})
    raw = pd.DataFrame({"Opportunity ID": ["1"], "Solution Type": ["x"], "VP Name": ["v"]})
    with pytest.raises(ContractViolation) as error:
        apply_mapping("deals", raw, mapping)
    found = [(p.describe().split(":")[0], p.expected, p.got) for p in error.value.problems]
    assert found == [
        ("deals.columns.product", "a column of the deals file (did you mean 'Solution Type'?)", "'Solution Typ'"),
        ("deals.exclude", "a column of the deals file (did you mean 'VP Name'?)", "'VP Nmae'"),
    ]  # Stage and Region Code are simply absent (a scoring export has no status): no close name, no problem
    # Differing only in case or spacing, which difflib's character ratio missed (an ops review: "deal cost").
    lower = Mapping({"deals": TableMapping(columns={"deal_id": "Opportunity ID", "amount": "deal cost"})})
    with pytest.raises(ContractViolation) as error:
        apply_mapping("deals", pd.DataFrame({"Opportunity ID": ["1"], "Deal Cost": ["5"]}), lower)
    assert [p.expected for p in error.value.problems] == ["a column of the deals file (did you mean 'Deal Cost'?)"]


def test_training_refuses_a_mapped_column_the_file_lacks_and_scoring_reads_on(tmp_path: Path) -> None:
    """`amount: "Nope"` trained a model with no amount and no value model, its export's "Deal Cost" an
    anonymous extra feature, without a word (the new-user audit). A scoring export may lack a mapped column
    (no status yet): the scoring commands check the model's inputs themselves."""
    export = write(tmp_path / "export.csv", CRM_EXPORT)
    mapping = write(tmp_path / "mapping.yaml", CRM_MAPPING.replace('"Deal Cost"', '"Nope"'))
    with pytest.raises(ContractViolation) as error:
        load_dataset(export, mapping=mapping, for_training=True, today=TODAY)
    [problem] = error.value.problems
    assert (problem.describe().split(":")[0], problem.got) == ("deals.columns.amount", "'Nope'")
    assert problem.expected.startswith("a column of the deals file, which has 'Opportunity ID', 'Deal Date',")
    scored = load_dataset(export, mapping=mapping, for_training=False, today=TODAY)
    assert "amount" not in scored.deals.columns and len(scored.deals) == 4


def test_the_statuses_the_wildcard_read_are_named_with_their_counts(tmp_path: Path) -> None:
    """With open: ["*"] and no close dates, 296 "Closed Won - Migrated" deals became open, wins lost from training
    without a word (an input audit)."""
    export = CRM_EXPORT + "OPP-5,02-Aug-11,Closed Won - Migrated,100.00,Solution 7,Gopa Trilochana,Ekta Zutshi,\n"
    dataset = load_dataset(write(tmp_path / "export.csv", export), mapping=write(tmp_path / "mapping.yaml",
                           CRM_MAPPING), for_training=True, today=TODAY)
    assert dataset.wildcard_statuses == {"in progress": 1, "Closed Won - Migrated": 1}
    assert dataset.wildcard_note() == ("the mapping's \"*\" read 2 deals as open: 'in progress' (1), 'Closed Won - "
                                       "Migrated' (1); list a value under won or lost in status_values if it means "
                                       "closed")
    listed = CRM_MAPPING.replace('open: ["*"]', 'open: ["in progress", "Closed Won - Migrated"]')
    dataset = load_dataset(write(tmp_path / "export.csv", export), mapping=write(tmp_path / "mapping.yaml", listed),
                           for_training=True, today=TODAY)
    assert dataset.wildcard_note() is None
    # Past six statuses the rest are counted, not listed: the note stays a line, and none goes unmentioned.
    many = export + "".join(f"OPP-{6 + i},02-Aug-11,Stage {i},100.00,Solution 7,Gopa Trilochana,Ekta Zutshi,\n"
                            for i in range(6))
    dataset = load_dataset(write(tmp_path / "export.csv", many), mapping=write(tmp_path / "mapping.yaml",
                           CRM_MAPPING), for_training=True, today=TODAY)
    note = dataset.wildcard_note()
    assert note is not None and note.startswith("the mapping's \"*\" read 8 deals as open: ")
    assert note.count("(1)") == 6 and " and 2 more; list a value" in note


def test_training_refuses_an_excluded_column_the_file_lacks(tmp_path: Path) -> None:
    """`exclude: [competitor_name]` beside a `competitor` column kept that column in the model without a word,
    where `--exclude competitor_name` is refused; a scoring export may lack it (as a mapped column)."""
    export = write(tmp_path / "export.csv", CRM_EXPORT)
    mapping = write(tmp_path / "mapping.yaml", CRM_MAPPING.replace('exclude: ["VP Name"]',
                                                                   'exclude: ["VP Name", "Sector Name", "Budget"]'))
    with pytest.raises(ContractViolation) as error:
        load_dataset(export, mapping=mapping, for_training=True, today=TODAY)
    found = [(p.describe().split(":")[0], p.expected, p.got) for p in error.value.problems]
    assert found[0] == ("deals.exclude", "a column of the deals file (did you mean 'Sector'?)", "'Sector Name'")
    assert found[1][0] == "deals.exclude" and found[1][2] == "'Budget'"
    assert found[1][1].startswith("a column of the deals file (which has 'Opportunity ID', 'Deal Date',")
    assert len(found) == 2
    assert len(load_dataset(export, mapping=mapping, for_training=False, today=TODAY).deals) == 4
    # Close to a column the mapping maps or the contract names, a name is no typo _likely_typos reports: it was
    # accepted without a word (`exclude: [amounts]` beside an amount column excluded nothing).
    for name, close in (("Deal Costs", "Deal Cost"), ("amounts", None)):
        mapping = write(tmp_path / "mapping.yaml", CRM_MAPPING.replace('exclude: ["VP Name"]', f'exclude: ["{name}"]'))
        export = write(tmp_path / "export.csv", CRM_EXPORT if close else CRM_EXPORT.replace("Deal Cost", "amount"))
        with pytest.raises(ContractViolation) as error:
            load_dataset(export, mapping=mapping, for_training=True, today=TODAY)
        [problem] = error.value.problems
        assert (problem.describe().split(":")[0], problem.got) == ("deals.exclude", f"'{name}'")
        assert f"did you mean '{close or 'amount'}'?" in problem.expected


def test_a_mapped_column_absent_beside_its_canonical_name_is_fine() -> None:
    mapping = Mapping({"deals": TableMapping(columns={"product": "Product"})})
    raw = pd.DataFrame({"deal_id": ["1"], "product": ["x"]})
    assert list(apply_mapping("deals", raw, mapping).columns) == ["deal_id", "product"]


def test_a_mapped_required_column_the_file_lacks_is_named_as_the_mapping_names_it(tmp_path: Path) -> None:
    """The refusal named only the canonical column, and listed the file's columns half renamed."""
    export = write(tmp_path / "export.csv", CRM_EXPORT.replace("Opportunity ID", "Opp Reference"))
    mapping = write(tmp_path / "mapping.yaml", CRM_MAPPING.replace('deal_id: "Opportunity ID"', 'deal_id: "Opp Ref"'))
    with pytest.raises(ContractViolation) as error:
        load_dataset(export, mapping=mapping, for_training=True, today=TODAY)
    problem = next(p for p in error.value.problems if p.field == "deal_id")
    assert problem.expected == "a column 'Opp Ref' (required: the mapping file's name for deal_id)"
    assert problem.got.startswith("no such column (columns: Opp Reference, Deal Date, Stage, Deal Cost,")


def test_an_open_deal_with_a_close_date_names_the_status_the_wildcard_made_open(tmp_path: Path) -> None:
    """With open: ["*"], an unlisted "Closed Won (pending)" became open, and the refusal of its closed_at
    named neither the value nor the wildcard."""
    export = write(tmp_path / "export.csv", "Opportunity ID,Deal Date,Stage,Close\n"
                                             "A,01-Mar-24,Won,10-Mar-24\n"
                                             "B,02-Mar-24,In progress,\n"
                                             "C,03-Mar-24,Closed Won (pending),20-Mar-24\n")
    mapping = write(tmp_path / "mapping.yaml", """\
deals:
  columns: {deal_id: "Opportunity ID", created_at: "Deal Date", status: "Stage", closed_at: "Close"}
  status_values: {won: ["Won", "Closed Won"], lost: ["Lost", "Closed Lost"], open: ["*"]}
  date_format: "%d-%b-%y"
""")
    with pytest.raises(ContractViolation) as error:
        load_dataset(export, mapping=mapping, for_training=True, today=TODAY)
    problem = next(p for p in error.value.problems if p.field == "closed_at")
    assert problem.expected == ("no closed_at for an open deal (the mapping's \"*\" made the status "
                                "'Closed Won (pending)' open: list it under won or lost if it means closed)")
    assert problem.rows == (3,)


def test_status_values_no_deal_has_are_named_before_training_refuses(tmp_path: Path) -> None:
    """An ops review: `won: ["Closed Wn"]` (a typo) made every win open through "*": training refused for 0 wins
    with no pointer to the mapping; and `won: ["Wn"]` beside an export's "Won" trained, the typo unseen."""
    from model.errors import InsufficientData
    from training.fit import TrainConfig, train

    export = write(tmp_path / "export.csv", CRM_EXPORT)
    typo = write(tmp_path / "typo.yaml", CRM_MAPPING.replace('won: ["Won", "Closed Won"]', 'won: ["Closed Wn"]'))
    dataset = load_dataset(export, mapping=typo, for_training=True, today=TODAY)
    assert dataset.unmatched_status_values == {"won": ("Closed Wn",), "lost": ("Lost",)}
    note = dataset.unmatched_status_note()
    assert note is not None and "won: 'Closed Wn'; lost: 'Lost'" in note
    assert "the export's statuses are 'Won' (1), 'Closed Lost' (1), 'in progress' (1), 'closed won' (1)" in note
    said: list[str] = []
    with pytest.raises(InsufficientData):
        train(dataset, TrainConfig(threads=1), progress=said.append)
    assert said and said[0] == note  # said before the refusal it explains
    whole = write(tmp_path / "whole.yaml",
                  CRM_MAPPING.replace('lost: ["Lost", "Closed Lost"]', 'lost: ["Closed Lost"]'))
    assert load_dataset(export, mapping=whole, for_training=True, today=TODAY).unmatched_status_note() is None


def test_a_yes_or_no_status_value_no_deal_has_is_named_once(tmp_path: Path) -> None:
    """The diff review: YAML booleans were never checked, so `won: [Yes]` against an export saying "Si" sent every
    win to "*" with no note."""
    export = write(tmp_path / "export.csv", "deal_id,created_at,status\n1,2024-01-01,Si\n2,2024-01-02,No\n"
                                             "3,2024-01-03,open\n")
    mapping = write(tmp_path / "mapping.yaml", "deals:\n  status_values: {won: [Yes], lost: [No], open: ['*']}\n")
    dataset = load_dataset(export, mapping=mapping, for_training=False, today=TODAY)
    assert dataset.unmatched_status_values == {"won": ("true/yes/on",)}  # the export has "No": lost matched
