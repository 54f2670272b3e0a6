"""Sources: CSV, Parquet, SQLite and PostgreSQL give the same validated deals; bad sources say why."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from dealscore import cli
from model.artifact import save_artifact
from model.dataset import dataset_from_frames, load_dataset
from model.errors import ContractViolation, SourceUnavailable
from model.mapping import load_mapping
from model.sources import REFUSED_FOR_GOOD_EXPECTED, CsvFormat, read_table
from model.validation import validate_deals
from training.fit import TrainingResult

TODAY = date(2025, 6, 30)
POSTGRES_URL = "postgresql+psycopg://127.0.0.1:5432/test"
IT_DEALS = Path(__file__).parents[2] / "shared/data/it_deals/it_deals.csv"


@pytest.fixture
def deals_text() -> pd.DataFrame:
    """Deals as a CRM writes them out: every value text, gaps where nothing was entered."""
    return pd.DataFrame({
        "deal_id": ["D1", "D2", "D3"],
        "client_id": ["C1", None, "C2"],
        "created_at": ["2024-01-05", "2024-02-01", "2024-03-01"],
        "closed_at": ["2024-01-20", None, None],
        "status": ["won", "open", "lost"],
        "amount": ["1000.5", "20", None],
        "Region": ["North", "South", None],
    }, dtype=object)


@pytest.fixture
def expected(deals_text: pd.DataFrame) -> pd.DataFrame:
    return validate_deals(deals_text, for_training=True, today=TODAY)


def same_deals(raw: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(validate_deals(raw, for_training=True, today=TODAY), expected)


@pytest.mark.parametrize("name", ["deals.csv", "deals.CSV", "deals.csv.gz"])
def test_csv(tmp_path: Path, deals_text: pd.DataFrame, expected: pd.DataFrame, name: str) -> None:
    path = tmp_path / name
    deals_text.to_csv(path, index=False, compression="gzip" if name.endswith(".gz") else None)
    raw = read_table(str(path), "deals")
    assert all(isinstance(v, str) for v in raw["amount"].dropna())  # validation owns type parsing
    same_deals(raw, expected)


def test_csv_with_byte_order_mark(tmp_path: Path, expected: pd.DataFrame, deals_text: pd.DataFrame) -> None:
    path = tmp_path / "deals.csv"
    path.write_bytes(deals_text.to_csv(index=False).encode("utf-8-sig"))
    same_deals(read_table(str(path), "deals"), expected)


def test_csv_text_is_read_as_written_and_number_and_date_cells_read_null_markers_as_gaps(tmp_path: Path) -> None:
    """pandas' defaults read "NA" (North America), "None" or "null" as missing in every column: a region
    level vanished. Text features now keep them; number, date, id, status and product cells read the usual
    null markers as gaps, as before (a SQL dump's "NULL" client is no client, its "N/A" product no product)."""
    path = tmp_path / "deals.csv"
    path.write_text("deal_id,client_id,created_at,closed_at,status,amount,product,Region,Score\n"
                    "D1,NULL,2024-01-05,null,open,N/A,N/A,NA,1.5\n"
                    "D2,C2,2024-02-01,2024-02-10,won,#N/A,loan,None,NaN\n"
                    "D3,n/a,2024-03-01,,lost,20,None,north,\n")
    deals = validate_deals(read_table(str(path), "deals"), for_training=True, today=TODAY)
    assert deals["deal_id"].tolist() == ["D1", "D2", "D3"]
    assert deals["client_id"].isna().tolist() == [True, False, True]
    assert deals["product"].isna().tolist() == [True, False, True]
    assert deals["Region"].tolist() == ["NA", "None", "north"]
    assert deals["amount"].isna().tolist() == [True, True, False]
    assert deals["closed_at"].isna().tolist() == [True, False, True]
    assert deals["Score"].dtype == "float64" and deals["Score"].isna().tolist() == [False, True, True]


def test_a_repeated_csv_header_is_refused_not_renamed_into_a_new_feature(tmp_path: Path) -> None:
    path = tmp_path / "deals.csv"
    path.write_text("deal_id,created_at,status,Campaign,Competitor,Campaign\nD1,2024-01-05,open,a,b,c\n")
    with pytest.raises(ContractViolation) as error:
        validate_deals(read_table(str(path), "deals"), for_training=True, today=TODAY)
    problem = next(p for p in error.value.problems if p.field == "Campaign")
    assert (problem.expected, problem.got) == ("one column of this name", "2 columns")


@pytest.mark.parametrize("name", ["deals.parquet", "deals.pq"])
def test_parquet_as_text_or_typed(
    tmp_path: Path, deals_text: pd.DataFrame, expected: pd.DataFrame, name: str
) -> None:
    deals_text.to_parquet(tmp_path / f"text-{name}")
    same_deals(read_table(str(tmp_path / f"text-{name}"), "deals"), expected)
    typed = deals_text.assign(
        created_at=pd.to_datetime(deals_text["created_at"], format="%Y-%m-%d"),
        amount=pd.to_numeric(deals_text["amount"]),
    )
    typed.to_parquet(tmp_path / f"typed-{name}")
    same_deals(read_table(str(tmp_path / f"typed-{name}"), "deals"), expected)


def test_a_parquet_file_written_from_a_frame_indexed_by_its_ids_keeps_them(tmp_path: Path,
                                                                            deals_text: pd.DataFrame,
                                                                            expected: pd.DataFrame) -> None:
    path = tmp_path / "deals.parquet"
    deals_text.set_index("deal_id").to_parquet(path)  # pandas reads it back with deal_id as the index
    same_deals(read_table(str(path), "deals"), expected)
    deals_text.set_index(["deal_id", "client_id"]).to_parquet(path)
    same_deals(read_table(str(path), "deals"), expected)
    deals_text.set_index("deal_id", drop=False).to_parquet(path)  # the ids twice: as the index and a column
    same_deals(read_table(str(path), "deals"), expected)


def test_a_partitioned_parquet_dataset_folder_is_read_as_one_table(tmp_path: Path, deals_text: pd.DataFrame,
                                                                     expected: pd.DataFrame) -> None:
    """Spark and pyarrow write a table as a folder of part files (one per partition): it had been "no file at"."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "deals.parquet"
    pq.write_to_dataset(pa.Table.from_pandas(deals_text.assign(part=["a", "b"] * (len(deals_text) // 2) + [
        "a"] * (len(deals_text) % 2)), preserve_index=False), folder, partition_cols=["part"])
    assert folder.is_dir()
    read = read_table(str(folder), "deals").sort_values("deal_id").reset_index(drop=True)
    same_deals(read.drop(columns=["part"]), expected)
    plain = tmp_path / "deals.csv"
    plain.mkdir()
    with pytest.raises(ContractViolation) as error:
        read_table(str(plain), "deals")
    assert error.value.problems[0].got.startswith(f"a folder at '{plain}'")


def test_a_parquet_file_with_a_repeated_column_is_refused_as_a_csv_header_is(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "deals.parquet"
    pq.write_table(pa.table([pa.array(["D1"]), pa.array([1.0]), pa.array([2.0])],
                            names=["deal_id", "amount", "amount"]), path)
    with pytest.raises(ContractViolation) as error:
        read_table(str(path), "deals")
    assert [(p.table, p.field, p.expected, p.got) for p in error.value.problems] == [
        ("deals", "amount", "one column of this name", "2 columns")]


def test_sqlite_table_and_query(tmp_path: Path, deals_text: pd.DataFrame, expected: pd.DataFrame) -> None:
    database = tmp_path / "crm.db"
    engine = sa.create_engine(f"sqlite:///{database}")
    deals_text.to_sql("deals", engine, index=False)
    engine.dispose()
    same_deals(read_table(f"sqlite:///{database}::deals", "deals"), expected)
    query = f"sqlite:///{database}::SELECT * FROM deals WHERE status IN ('won', 'lost')"
    same_deals(read_table(query, "deals"), expected[expected["status"] != "open"].reset_index(drop=True))
    # As saved warehouse queries start: a comment line, a block comment (they had been looked up as tables named
    # "-- nightly\nSELECT ..."; a parenthesised UNION, which SQLite does not run, in the PostgreSQL test).
    closed = expected[expected["status"] != "open"].reset_index(drop=True)
    for saved in ("-- nightly export\nSELECT * FROM deals WHERE status IN ('won', 'lost')",
                  "/* closed deals */ SELECT * FROM deals WHERE status IN ('won', 'lost')"):
        same_deals(read_table(f"sqlite:///{database}::{saved}", "deals"), closed)


def test_a_table_name_in_sql_quotes_is_the_name_inside_them(tmp_path: Path, deals_text: pd.DataFrame,
                                                             expected: pd.DataFrame) -> None:
    # As a database's own tools write them: "Deals Export" was looked up as a table named with its quotes.
    database = tmp_path / "crm.db"
    engine = sa.create_engine(f"sqlite:///{database}")
    deals_text.to_sql("Deals Export", engine, index=False)
    deals_text.to_sql("deals.2025", engine, index=False)
    engine.dispose()
    for name in ('"Deals Export"', "Deals Export", 'main."Deals Export"', '"main"."Deals Export"', '"deals.2025"'):
        same_deals(read_table(f"sqlite:///{database}::{name}", "deals"), expected)
    for bad in ('"Deals Export', '"Deals Export"x', 'a."b".c', "main.", ".deals"):
        with pytest.raises(ContractViolation) as error:
            read_table(f"sqlite:///{database}::{bad}", "deals")
        assert error.value.problems[0].got == f"the table name {bad!r}"
        assert error.value.problems[0].expected.startswith("a table name or schema.table, each part as it is")


def test_a_commented_name_that_is_no_query_is_told_at_once(tmp_path: Path) -> None:
    """Comment lines and blank lines before a typo ("SELEC") had made the query pattern backtrack exponentially: 5
    blank lines took 46 s, 6 never ended (a diff review). Run apart, so that a regression fails instead of hanging."""
    import subprocess
    import sys

    database = tmp_path / "crm.db"
    sa.create_engine(f"sqlite:///{database}").dispose()
    database.touch()
    source = f"sqlite:///{database}::-- nightly export\n" + "   \n" * 40 + "SELEC * FROM deals"
    script = ("import sys\nfrom model.errors import ContractViolation\nfrom model.sources import read_table\n"
              "try:\n    read_table(sys.argv[1], 'deals')\nexcept ContractViolation as error:\n"
              "    print(error.problems[0].got)\n")
    done = subprocess.run([sys.executable, "-c", script, source], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert "query failed on sqlite:///" in done.stdout, done.stderr


@pytest.fixture
def postgres() -> Iterator[sa.Engine]:
    """The local test server; the role is whichever of root (the URL's default) and postgres exists."""
    url = sa.make_url(POSTGRES_URL)
    last_error: Exception | None = None
    for candidate in (url, url.set(username="postgres")):
        engine = sa.create_engine(candidate)
        try:
            with engine.connect():
                pass
        except sa.exc.OperationalError as error:
            last_error = error
            engine.dispose()
            continue
        yield engine
        engine.dispose()
        return
    pytest.skip(f"PostgreSQL at {POSTGRES_URL} is unreachable: {str(last_error).splitlines()[0]}")


@pytest.mark.postgres
def test_postgresql_table_and_query(
    postgres: sa.Engine, deals_text: pd.DataFrame, expected: pd.DataFrame
) -> None:
    table = f"deals_{uuid.uuid4().hex[:12]}"
    url = postgres.url.render_as_string(hide_password=False)
    # Typed columns, as a real CRM database has them: dates and numeric come back as Python objects.
    create = (f"CREATE TABLE {table} (deal_id text, client_id text, created_at date, closed_at date, "
              "status text, amount numeric(12, 2), \"Region\" text)")
    rows = deals_text.astype(object).where(deals_text.notna(), None).to_dict("records")
    try:
        with postgres.begin() as connection:
            connection.execute(sa.text(create))
            connection.execute(
                sa.text(f"INSERT INTO {table} VALUES (:deal_id, :client_id, CAST(:created_at AS date), "
                        f"CAST(:closed_at AS date), :status, CAST(:amount AS numeric), :Region)"),
                [{str(k): v for k, v in row.items()} for row in rows],
            )
        same_deals(read_table(f"{url}::{table}", "deals"), expected)
        same_deals(read_table(f'{url}::public."{table}"', "deals"), expected)  # as psql writes a quoted name
        by_query = read_table(f"{url}::SELECT * FROM {table} WHERE amount::numeric > 100", "deals")
        assert by_query["deal_id"].tolist() == ["D1"]
        by_union = read_table(f"{url}::(SELECT * FROM {table} WHERE amount::numeric > 100) UNION ALL "
                              f"(SELECT * FROM {table} WHERE amount IS NULL)", "deals")
        assert "D1" in by_union["deal_id"].tolist()
        # A "%" reaches the database as written (psycopg had read it as a placeholder and refused the query).
        by_pattern = read_table(f"{url}::SELECT * FROM {table} WHERE deal_id LIKE 'D%'", "deals")
        assert by_pattern["deal_id"].tolist() == expected["deal_id"].tolist()
    finally:
        with postgres.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))


@pytest.mark.postgres
def test_numeric_ids_above_2_53_are_read_exactly_from_postgresql(postgres: sa.Engine) -> None:
    """NUMERIC(20,0) ids come as Decimals, which pandas turned into floats, gaps or not: 2**60 + 1 and 2**60 + 2
    read as one client, and deals were linked to another (a database-inputs review: AUC 0.800 -> 0.635, no word)."""
    table = f"ids_{uuid.uuid4().hex[:12]}"
    url = postgres.url.render_as_string(hide_password=False)
    ids = [2**60 + i for i in range(1, 6)]
    try:
        with postgres.begin() as connection:
            connection.execute(sa.text(f"CREATE TABLE {table} (client_id numeric(20, 0), amount numeric(12, 2), "
                                       "with_gap numeric(20, 0))"))
            connection.execute(sa.text(f"INSERT INTO {table} VALUES (:c, :a, :g)"),
                               [{"c": c, "a": 1000.25 + i, "g": None if i == 0 else c} for i, c in enumerate(ids)])
        frame = read_table(f"{url}::SELECT * FROM {table} ORDER BY client_id", "clients")
        assert [int(c) for c in frame["client_id"]] == ids
        assert [None if g is None else int(g) for g in frame["with_gap"]] == [None, *ids[1:]]
        assert frame["amount"].dtype == "float64" and frame["amount"].tolist() == [1000.25 + i for i in range(5)]
    finally:
        with postgres.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))


@pytest.mark.postgres
def test_infinite_postgresql_dates_are_refused_by_table_column_and_row(
    postgres: sa.Engine, tmp_path: Path, trained: TrainingResult, capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL's 'infinity' and '-infinity' (and a year past 9999) are dates Python cannot hold: psycopg failed
    the whole read ("query failed on ...: date too large (after year 10K): 'infinity'"), naming no column. They are
    refused as any bad date is, by table, column and row, and both commands exit 2."""
    table = f"dates_{uuid.uuid4().hex[:12]}"
    url = postgres.url.render_as_string(hide_password=False)
    try:
        with postgres.begin() as connection:
            connection.execute(sa.text(f"CREATE TABLE {table} (deal_id text, created_at date, closed_at timestamptz, "
                                       "status text, amount numeric(12, 2))"))
            connection.execute(sa.text(f"INSERT INTO {table} VALUES ('D1', '2024-01-05', 'infinity', 'won', 10), "
                                       "('D2', '-infinity', '2024-02-10', 'lost', 20), "
                                       "('D3', '12000-01-01', NULL, 'open', 30), "
                                       "('D4', '2024-03-01', NULL, 'open', 5)"))
        source = f"{url}::{table}"
        with pytest.raises(ContractViolation) as refused:
            load_dataset(source, for_training=True, today=TODAY)
        problems = {p.field: p for p in refused.value.problems}
        assert set(problems) == {"created_at", "closed_at"}
        assert (problems["closed_at"].table, problems["closed_at"].got, problems["closed_at"].rows) == (
            "deals", "'infinity'", (1,))
        assert (problems["created_at"].got, problems["created_at"].rows) == ("'-infinity', '12000-01-01'", (2, 3))
        assert problems["closed_at"].expected.startswith("a date like 2024-03-31")
        assert "NULL where there is none, not infinity" in problems["closed_at"].expected

        model = save_artifact(trained.model, tmp_path / "model", trained.metadata)
        for argv in (["train", "--deals", source, "--out", str(tmp_path / "trained")],
                     ["score", "--model", str(model), "--deals", source, "--out", str(tmp_path / "scores.csv")]):
            assert cli.main(argv) == 2
            said = capsys.readouterr().err
            assert "deals.closed_at: expected a date like 2024-03-31" in said and "got 'infinity' (row 1)" in said
            assert "query failed" not in said
    finally:
        with postgres.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))


# 19-digit ids, as some CRMs make them; one deal without a client makes the column nullable.
BIG_IDS = [1234567890123456789, 1234567890123456790, None, 987654321098765432]


def _ids_as_validated(frame: pd.DataFrame) -> list[object]:
    clients = dataset_from_frames(frame.assign(created_at="2024-01-01", status="won",
                                               deal_id=[f"D{i}" for i in range(len(frame))]),
                                  None, None, for_training=False).deals["client_id"]
    return [None if v != v else v for v in clients.tolist()]


def test_nullable_integer_ids_above_2_53_are_read_exactly_from_parquet_and_sql(tmp_path: Path) -> None:
    """A nullable integer column reads as float64, and a float64 holds no 19-digit integer exactly: two clients
    1 apart became one, and deals linked to the wrong client, without a word (Parquet and SQL)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    exact = ["1234567890123456789", "1234567890123456790", None, "987654321098765432"]
    path = tmp_path / "deals.parquet"
    pq.write_table(pa.table({"client_id": pa.array(BIG_IDS, type=pa.int64()), "amount": [1.5, None, 3.0, 1e12],
                             "small": pa.array([1, None, 3, 4], type=pa.int64())}), path)
    database = tmp_path / "crm.db"
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE deals (client_id INTEGER, amount REAL, small INTEGER)"))
        connection.execute(sa.text("INSERT INTO deals VALUES (:c, :a, :s)"),
                           [{"c": c, "a": a, "s": s} for c, a, s in zip(BIG_IDS, [1.5, None, 3.0, 1e12],
                                                                        [1, None, 3, 4], strict=True)])
    engine.dispose()
    for source in (str(path), f"sqlite:///{database}::deals"):
        frame = read_table(source, "deals")
        assert _ids_as_validated(frame) == exact, source
        # Other columns read as before: floats stay floats, small integers with a gap too.
        assert frame["amount"].dtype == "float64" and frame["small"].dtype == "float64"
    # Read once: each row's exact id stays with its own row however the database orders them (a second read
    # paired by position gave deals another deal's client when the order changed between the reads).
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE pairs (client_id INTEGER, label TEXT)"))
        connection.execute(sa.text("INSERT INTO pairs VALUES (:c, :l)"),
                           [{"c": None if i % 7 == 0 else 2**60 + i, "l": "none" if i % 7 == 0 else str(2**60 + i)}
                            for i in range(200)])
    engine.dispose()
    for _ in range(3):
        shuffled = read_table(f"sqlite:///{database}::SELECT * FROM pairs ORDER BY random()", "pairs")
        assert [str(c) if c is not None else "none" for c in shuffled["client_id"]] == shuffled["label"].tolist()


def test_a_csv_row_with_fewer_fields_than_the_header_is_refused(tmp_path: Path) -> None:
    """pandas pads a short row with gaps: an export cut off mid-line was read with its last cells empty, exit 0.
    Trailing empty cells, blank lines and a quoted value holding a line break are no short rows."""
    good = ('deal_id,created_at,status,amount\nD1,2024-01-05,won,10\n\nD2,2024-01-06,lost,\n   \n'
            'D3,"2024-01-07",open,"1\n2"\n')
    path = tmp_path / "deals.csv"
    path.write_text(good)
    assert read_table(str(path), "deals")["deal_id"].tolist() == ["D1", "D2", "D3"]
    path.write_text(good + "D4,2024-01-08\nD5,2024-01-09,won,5\nD6,2024-01")
    with pytest.raises(ContractViolation) as error:
        read_table(str(path), "deals")
    [problem] = error.value.problems
    assert problem.field == "deals source" and problem.expected.startswith(
        "a CSV file whose every row has as many fields as its header")
    assert problem.got == f"'{path}' line 8 with 2 of the header's 4 fields (and 1 more row)"


def test_a_csv_row_with_more_fields_than_the_header_is_named(tmp_path: Path) -> None:
    """Refused as "expected a CSV (.csv, .csv.gz) or Parquet file ... cannot be read: Error tokenizing data", of
    a CSV file (a CLI review)."""
    path = tmp_path / "deals.csv"
    # The file's own line, after a quoted value spanning two lines (pandas counts records: it said "line 3").
    path.write_text('deal_id,created_at,status,amount\nD1,"2024-01-05",won,"1\n0"\n\nD2,2024-01-06,lost,1,200,x\n'
                    "D3,2024-01-06,lost,1,5\n")
    with pytest.raises(ContractViolation) as error:
        read_table(str(path), "deals")
    [problem] = error.value.problems
    assert problem.got == f"'{path}' line 5 with 6 fields, the header's 4 (and 1 more row)"
    assert problem.expected == ("a CSV file whose every row has as many fields as its header (a row with more holds "
                                "an unquoted ',' in a value: quote such values)")


def test_a_utf8_file_with_a_byte_order_mark_read_as_another_encoding_is_refused_saying_so(tmp_path: Path) -> None:
    """Read as cp1252, the mark became part of the first column's name: "no such column (columns: ï»¿deal_id"."""
    path = tmp_path / "deals.csv"
    path.write_bytes(b"\xef\xbb\xbfdeal_id,created_at,status\nD1,2024-01-05,won\n")
    with pytest.raises(ContractViolation) as error:
        read_table(str(path), "deals", CsvFormat(encoding="cp1252"))
    [problem] = error.value.problems
    assert problem.got == f"'{path}', which starts with UTF-8's byte-order mark"
    assert problem.expected.endswith("(this one is UTF-8: drop the encoding, UTF-8 is the default)")
    assert read_table(str(path), "deals")["deal_id"].tolist() == ["D1"]  # the default reads it


def test_decimal_commas_in_a_parquet_text_column_are_not_sent_to_the_csv_format(tmp_path: Path) -> None:
    """The refusal advised the mapping file's csv: {decimal: ','}, which a Parquet or SQL table never reads."""
    from model.dataset import load_dataset

    path = tmp_path / "deals.parquet"
    pd.DataFrame({"deal_id": ["D1", "D2"], "created_at": ["2024-01-05", "2024-01-06"], "status": ["won", "lost"],
                  "amount": ["15998,69", "740,65"]}).to_parquet(path)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("deals:\n  csv: {decimal: ',', separator: ';'}\n")
    for given in (None, str(mapping)):
        with pytest.raises(ContractViolation) as error:
            load_dataset(str(path), mapping=given, for_training=True, today=date(2026, 1, 1))
        [problem] = error.value.problems
        assert problem.field == "amount" and problem.expected.endswith(
            "; this table is no CSV file, so make the column a number in the file or the query)"), given
    csv_path = tmp_path / "deals.csv"
    pd.read_parquet(path).to_csv(csv_path, index=False)
    with pytest.raises(ContractViolation) as error:
        load_dataset(str(csv_path), for_training=True, today=date(2026, 1, 1))
    assert "read with the mapping file's csv: {decimal: ','}" in error.value.problems[0].expected


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ContractViolation, match="^deals source cannot be read") as error:
        read_table(str(tmp_path / "deals.csv"), "deals")
    (problem,) = error.value.problems
    assert problem.field == "deals source"
    assert problem.got == f"no file at '{tmp_path / 'deals.csv'}'"
    assert "CSV" in problem.expected and "Parquet" in problem.expected and "::" in problem.expected


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "deals.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(ContractViolation) as error:
        read_table(str(path), "clients")
    (problem,) = error.value.problems
    assert (problem.field, problem.got) == ("clients source", f"'{path}' (.xlsx)")


def test_unreadable_files(tmp_path: Path) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes("deal_id,manager\nD1,Jos\xe9\n".encode("cp1252"))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    for path, got in ((latin, "is not UTF-8 text"), (empty, "is empty"), (broken, "cannot be read")):
        with pytest.raises(ContractViolation) as error:
            read_table(str(path), "deals")
        assert got in error.value.problems[0].got, path


def test_failing_queries(tmp_path: Path) -> None:
    database = tmp_path / "crm.db"
    sa.create_engine(f"sqlite:///{database}").dispose()
    database.touch()
    cases = {
        f"sqlite:///{database}::deals": "no such table: deals",
        f"sqlite:///{database}::SELECT nonsense FROM nowhere": "no such table: nowhere",
        f"sqlite:///{tmp_path / 'missing.db'}::deals": "no SQLite file at",
        "nosuchdb://host/db::deals": "query failed on nosuchdb://host/db",
    }
    for source, got in cases.items():
        with pytest.raises(ContractViolation) as error:
            read_table(source, "deals")
        (problem,) = error.value.problems
        assert problem.field == "deals source"
        assert got in problem.got, problem.got
        assert "secret" not in problem.got
    assert not (tmp_path / "missing.db").exists()  # a mistyped path must not leave an empty database behind


def test_a_database_that_cannot_be_reached_is_a_transient_failure(tmp_path: Path) -> None:
    """An unreachable database was 'bad input' (exit 2), like a wrong column: a scheduler could not tell that
    running again later may succeed. It is SourceUnavailable now, and `dealscore` exits 4."""
    from dealscore import cli
    from model.errors import SourceUnavailable

    source = "postgresql+psycopg://user:secret@127.0.0.1:1/db::deals"
    with pytest.raises(SourceUnavailable, match="deals source cannot be reached: postgresql") as error:
        read_table(source, "deals")
    assert error.value.transient and "secret" not in error.value.message
    assert cli.main(["train", "--deals", source, "--out", str(tmp_path / "model")]) == cli.EXIT_RETRY == 4


@pytest.mark.postgres
def test_a_database_or_role_that_does_not_exist_is_bad_input_not_a_retry(postgres: sa.Engine, tmp_path: Path) -> None:
    """A typo in the URL had exit 4, "try again later": a scheduler retrying on 4 retried it forever."""
    from dealscore import cli

    server = postgres.url
    for url, words in ((server.set(database="dealscore_no_such_db"), 'database "dealscore_no_such_db" does not exist'),
                       (server.set(username="dealscore_no_such_role"), 'role "dealscore_no_such_role" does not exist')):
        source = f"{url.render_as_string(hide_password=False)}::deals"
        with pytest.raises(ContractViolation) as error:
            read_table(source, "deals")
        (problem,) = error.value.problems
        assert words in problem.got and problem.expected == REFUSED_FOR_GOOD_EXPECTED
        assert cli.main(["train", "--deals", source, "--out", str(tmp_path / "model")]) == 2


@pytest.mark.postgres
def test_ssl_the_server_lacks_is_bad_input_not_a_retry(postgres: sa.Engine) -> None:
    """Exit 4 (try again later) had been given for every other refusal at connect: sslmode=require against a server
    without SSL would have been retried by a scheduler forever (a review)."""
    server = postgres.url
    url = server.update_query_dict({"sslmode": "require"})
    with pytest.raises(ContractViolation) as error:
        read_table(f"{url.render_as_string(hide_password=False)}::deals", "deals")
    (problem,) = error.value.problems
    assert "server does not support SSL" in problem.got and problem.expected == REFUSED_FOR_GOOD_EXPECTED
    # The server away is still a retry.
    with pytest.raises(SourceUnavailable):
        read_table(f"{server.set(port=5999).render_as_string(hide_password=False)}::deals", "deals")


def test_a_host_name_that_does_not_resolve_is_a_retry_not_bad_input(tmp_path: Path) -> None:
    """"Name or service not known" (EAI_NONAME) is what the database being away can give too: a compose service's or
    a StatefulSet pod's name resolves only while its container runs, so a nightly retrain or prune started while
    the database restarts read exit 2, bad input, and a scheduler retrying on exit 4 never ran it again. A typo'd
    host is retried (the message names the host and the resolver's words); a running database is not lost."""
    import sqlalchemy as sa

    from dealscore.feedback_commands import _database_away
    from model.sources import refused_for_good

    source = "postgresql+psycopg://user:secret@dealscore-no-such-host.invalid:5432/db::deals"
    with pytest.raises(SourceUnavailable, match="deals source cannot be reached") as error:
        read_table(source, "deals")
    assert error.value.transient and "dealscore-no-such-host.invalid" in error.value.message
    assert cli.main(["train", "--deals", source, "--out", str(tmp_path / "model")]) == cli.EXIT_RETRY
    # The words of libpq (psycopg2) and of psycopg 3's own lookup, whichever the resolver gives here.
    for words in ('could not translate host name "db" to address: Name or service not known',
                  "failed to resolve host 'db': [Errno -2] Name or service not known"):
        assert not refused_for_good(words)
        away = sa.exc.OperationalError("connect", {}, Exception(words))
        assert _database_away("postgresql+psycopg://db/dealscore", away)


@pytest.mark.skipif(not IT_DEALS.is_file(), reason=f"public data set not present at {IT_DEALS}")
def test_it_deals_through_a_mapping_validates_for_training(tmp_path: Path) -> None:
    mapping = tmp_path / "it_deals.yaml"
    mapping.write_text("""\
deals:
  columns: {deal_id: "Deal Number", created_at: "Deal Date", status: "Deal Status Code", amount: "Deal Cost",
            product: "Solution Type", manager: "Manager Name"}
  status_values: {won: [Won], lost: [Lost]}
  date_format: "%d-%b-%y"
  exclude: ["VP Name"]
""")
    raw = read_table(str(IT_DEALS), "deals")
    # The export has no deal id (and 11 rows repeat exactly): its row number is the only identity it has.
    raw.insert(0, "Deal Number", [f"IT-{i}" for i in range(1, len(raw) + 1)])

    dataset = dataset_from_frames(raw, mapping=load_mapping(mapping), for_training=True, today=TODAY)

    deals = dataset.deals
    assert len(deals) == 7697
    assert set(deals["status"]) == {"won", "lost"}
    assert deals["created_at"].min() >= pd.Timestamp("2011-01-01")
    assert deals["created_at"].max() < pd.Timestamp("2018-01-01")
    assert (deals["amount"] >= 0).all()
    assert dataset.excluded_columns == ("VP Name",)
    assert dataset.extra_columns == {"Client Category": "text", "Sector": "text", "Location": "text"}
    assert 0.3 < (deals["status"] == "won").mean() < 0.4  # 36.4 % per the data set's provenance notes


def test_a_semicolon_separated_csv_is_refused_naming_the_separator(tmp_path: Path) -> None:
    path = tmp_path / "deals.csv"
    path.write_text("deal_id;created_at;status\nD1;2024-01-05;open\n")
    with pytest.raises(ContractViolation) as error:
        read_table(str(path), "deals")
    problem = error.value.problems[0]
    assert problem.expected == ("a CSV file separated by ',' (or the mapping file's csv: {separator: ';'} for this "
                                "table)")
    assert "one column holding semicolons: 'deal_id;created_at;status'" in problem.got


def test_a_european_export_reads_through_the_mapping_files_csv_format(tmp_path: Path) -> None:
    """Semicolons between columns, decimal commas, Windows-1252 text: an Excel export in much of Europe."""
    from model.dataset import load_dataset

    path = tmp_path / "deals.csv"
    path.write_bytes("deal_id;created_at;status;amount;Région\nD1;2024-01-05;open;1234,5;Île-de-France\n"
                     "D2;2024-02-01;won;20;Bretagne\n".encode("cp1252"))
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("deals:\n  csv: {separator: ';', decimal: ',', encoding: cp1252}\n", encoding="utf-8")
    deals = load_dataset(str(path), mapping=str(mapping), for_training=False, today=TODAY).deals
    assert deals["amount"].tolist() == [1234.5, 20.0]
    assert deals["Région"].tolist() == ["Île-de-France", "Bretagne"]
    path.write_bytes("deal_id;created_at;status;amount\nD1;2024-01-05;open;1.234,5\n".encode("cp1252"))
    with pytest.raises(ContractViolation) as error:
        load_dataset(str(path), mapping=str(mapping), for_training=False, today=TODAY)
    problem = next(p for p in error.value.problems if p.field == "amount")
    assert problem.expected == ("a finite number (digits with a comma for decimals: no thousands separators, "
                                "spaces or currency signs)")
    with pytest.raises(ContractViolation) as unseparated:  # the separator not declared
        load_dataset(str(path), for_training=False, today=TODAY)
    assert "one column holding semicolons" in unseparated.value.problems[0].got
    path.write_bytes("deal_id,created_at,status,Région\nD1,2024-01-05,open,Île\n".encode("cp1252"))
    with pytest.raises(ContractViolation) as unreadable:  # the code page not declared
        load_dataset(str(path), for_training=False, today=TODAY)
    assert "is not UTF-8 text" in unreadable.value.problems[0].got


def test_a_repeated_status_column_through_a_mapping_is_counted_right(tmp_path: Path) -> None:
    from model.dataset import load_dataset

    path = tmp_path / "deals.csv"
    path.write_text("deal_id,created_at,Stage,Stage\nD1,2024-01-05,Won,Lost\n")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("deals:\n  columns: {status: Stage}\n  status_values: {won: [Won], lost: [Lost]}\n")
    with pytest.raises(ContractViolation) as error:
        load_dataset(str(path), mapping=str(mapping), for_training=True, today=TODAY)
    problem = next(p for p in error.value.problems if p.field == "status")
    assert (problem.expected, problem.got) == ("one column of this name", "2 columns")


def test_a_csv_format_applies_to_csv_sources_only(tmp_path: Path) -> None:
    """A mapping reused for a Parquet export applied its decimal comma there: amounts already typed as
    numbers were refused ('15998.69': digits with a comma for decimals)."""
    from model.dataset import load_dataset

    pd.DataFrame({"deal_id": ["D1", "D2"], "created_at": ["2024-01-05", "2024-02-01"], "status": ["open", "won"],
                  "amount": ["15998.69", "20.5"]}).to_parquet(tmp_path / "deals.parquet")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("deals:\n  csv: {separator: ';', decimal: ','}\n")
    deals = load_dataset(str(tmp_path / "deals.parquet"), mapping=str(mapping), for_training=False, today=TODAY).deals
    assert deals["amount"].tolist() == [15998.69, 20.5]


def test_a_password_given_as_a_query_parameter_is_never_shown() -> None:
    """A security review: `?password=` (which libpq reads) was printed whole in warnings and CLI errors, where the
    `user:password@` form was masked."""
    from test_feedback_helpers import down_url

    from model.dataset import load_dataset
    from model.errors import DealscoreError
    from model.sources import masked_url
    from service.feedback.db import shown_url

    url = down_url().replace("/test", "/test?password=QuerySecretPW&sslmode=disable")
    assert shown_url(url).endswith("/test?password=***&sslmode=disable")
    assert "QuerySecretPW" not in masked_url(sa.make_url(url + "&sslpassword=Other")) and "Other" not in shown_url(
        url + "&sslpassword=Other")
    with pytest.raises(DealscoreError) as refused:
        load_dataset(f"{url}::deals", for_training=True)
    assert "QuerySecretPW" not in refused.value.report() and "password=***" in refused.value.report()
