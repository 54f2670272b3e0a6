"""The public data sets as dealscore reads them: raw files, the few columns a mapping cannot make, a mapping.

Shared by bench/training_quality.py and tests/test_public_data.py so both train on exactly the same input.
The data stay in ../shared/data (next to the repository); nothing is copied into the project.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from model.dataset import Dataset, dataset_from_frames
from model.mapping import Mapping, load_mapping
from model.sources import read_table

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


@dataclass(frozen=True)
class Frames:
    """Raw source tables (text values, as read from CSV) ready for the mapping file."""

    deals: pd.DataFrame
    clients: pd.DataFrame | None = None


@dataclass(frozen=True)
class PublicSet:
    name: str
    files: tuple[str, ...]  # relative to the data folder; all must exist
    read: Callable[[Path], Frames]
    leak: str | None  # a column known to leak the outcome, left in on purpose

    def available(self, data_dir: Path = DATA_DIR) -> bool:
        return all((data_dir / f).is_file() for f in self.files)

    def mapping(self) -> Mapping:
        return load_mapping(MAPPINGS_DIR / f"{self.name}.yaml")


def read_it_deals(data_dir: Path) -> Frames:
    deals = read_table(str(data_dir / "it_deals" / "it_deals.csv"), "deals")
    deals.insert(0, "Deal ID", [f"IT{i:05d}" for i in range(1, len(deals) + 1)])  # the file has no id
    return Frames(deals)


def read_maven_crm(data_dir: Path) -> Frames:
    folder = data_dir / "maven_crm"
    # Prospecting deals have no engage_date, hence no created_at: they are open, and training sets open deals
    # without created_at aside (counted as undated_open_deals in the data summary).
    deals = read_table(str(folder / "sales_pipeline.csv"), "deals")
    clients = read_table(str(folder / "accounts.csv"), "clients")
    return Frames(deals, clients)


def read_bank_marketing(data_dir: Path) -> Frames:
    deals = read_table(str(data_dir / "bank_marketing" / "bank_full.csv"), "deals")
    month = deals["month"].str.strip().str.lower().map({m: i + 1 for i, m in enumerate(MONTHS)})
    # Rows are in contact order from May 2008; the year is not recorded, so it goes up by one each
    # time the month number falls (checked: the rebuilt dates never go backwards).
    year = 2008 + (month.diff() < 0).cumsum()
    dates = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": deals["day"].astype(int)}))
    if (np.diff(dates.to_numpy().astype("datetime64[D]").astype(np.int64)) < 0).any():
        raise ValueError("bank_full.csv rows are not in date order; cannot rebuild contact dates")
    deals.insert(0, "contact_id", [f"B{i:05d}" for i in range(1, len(deals) + 1)])
    deals.insert(1, "contact_date", dates.dt.strftime("%Y-%m-%d"))
    return Frames(deals)


def read_cdnow(data_dir: Path) -> Frames:
    deals = read_table(str(data_dir / "cdnow" / "cdnow_transactions.csv"), "deals")
    # Purchases only: no id (rows repeat exactly, see PROVENANCE.md) and no status, so each row gets both.
    deals.insert(0, "purchase_id", [f"CD{i:05d}" for i in range(1, len(deals) + 1)])
    deals["purchase"] = "bought"
    return Frames(deals)


PUBLIC_SETS: tuple[PublicSet, ...] = (
    PublicSet("it_deals", ("it_deals/it_deals.csv",), read_it_deals, leak=None),
    PublicSet("maven_crm", ("maven_crm/sales_pipeline.csv", "maven_crm/accounts.csv"), read_maven_crm,
              leak="close_value"),
    PublicSet("bank_marketing", ("bank_marketing/bank_full.csv",), read_bank_marketing, leak="duration"),
)
# Purchases without lost deals: client analytics' data (bench/client_analytics_bench.py), not training's.
TRANSACTION_SETS: tuple[PublicSet, ...] = (
    PublicSet("cdnow", ("cdnow/cdnow_transactions.csv",), read_cdnow, leak=None),
)
BY_NAME = {s.name: s for s in (*PUBLIC_SETS, *TRANSACTION_SETS)}


def load(name: str, data_dir: Path = DATA_DIR, *, keep_excluded: bool = False,
         rows: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> Dataset:
    """A public set read, mapped and validated. `keep_excluded` drops the mapping's `exclude` list (to
    show that the leak guard finds the column too); `rows` picks rows of the raw deals (subsampling)."""
    public = BY_NAME[name]
    frames = public.read(data_dir)
    mapping = public.mapping()
    if keep_excluded:
        mapping = Mapping({**mapping.tables, "deals": replace(mapping.table("deals"), exclude=())})
    deals = rows(frames.deals).reset_index(drop=True) if rows is not None else frames.deals
    return dataset_from_frames(deals, frames.clients, None, mapping, for_training=True)
