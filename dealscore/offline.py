"""Offline jobs over files: score deals, list gaps, client analytics. Outputs are written atomically.

With a model, input columns are typed as the model was trained on them (its feature spec, its profiles'
attributes), as the service does: a text column whose values all look like numbers ("123") stays the
text level "123" instead of becoming the number 123.0, a level the model never saw.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from dealscore.outputs import write_csv_atomically
from model.artifact import load_artifact
from model.contract import NULL_MARKERS, SENT_HISTORY_COLUMNS, utc_today
from model.dataset import load_dataset
from model.errors import ContractViolation, Problem, ProblemList, counted
from model.features import (
    CLIENT_ATTRIBUTES,
    CLIENT_EXTRA_PREFIX,
    attach_clients,
    day_numbers,
    frame_columns,
    missing_feature_columns,
    unseen_levels,
)
from model.profiles import TENURE
from model.records import day_number, history_problems
from model.spellings import nearest_spelling
from model.validation import DATE_FORMAT_ATTR, merged_spellings_of, validate_client_history

# Deals scored in one model pass offline. A deal's score never depends on the others scored with it; a whole
# file in one pass held every deal's tree paths at once (the scale audit: 13.5 GB for 1M deals on a 1M-deal model).
SCORE_CHUNK = 50_000


def score_frame(model: Any, deals: pd.DataFrame, clients: pd.DataFrame | None) -> pd.DataFrame:
    """Scores of canonical deals, in input order, with the columns of the contract first. Deals may carry
    their client's history (won_deals, won_amount, first_won_at, last_won_at), whole, as the service takes it."""
    joined = attach_clients(deals, clients, model.spec.client_extras or ())
    columns = frame_columns(joined)
    columns.update(_sent_history(deals))
    deal_ids = deals["deal_id"].to_numpy()
    starts = range(0, len(deals), SCORE_CHUNK) if len(deals) else [0]
    return pd.concat([_scores(model, {name: values[start:start + SCORE_CHUNK] for name, values in columns.items()},
                              deal_ids[start:start + SCORE_CHUNK]) for start in starts], ignore_index=True)


def _scores(model: Any, columns: dict[str, Any], deal_ids: Any) -> pd.DataFrame:
    batch = model.score(columns)
    return pd.DataFrame({
        "deal_id": deal_ids,
        "p_win": batch.p_win,
        "value": batch.value,
        "expected_value": batch.expected_value,
        "grade": batch.grade,
        "grade_reason": batch.grade_reason,
        "value_per_hour": batch.value_per_hour,
        "value_source": batch.value_source,
        "history_source": batch.history_source,
        "model_version": model.version,
        "reasons": [json.dumps([r.answer() for r in reasons])
                    for reasons in batch.reasons],
        "not_sent": [json.dumps(inputs) for inputs in batch.not_sent],  # averaged out (ScoreBatch.not_sent)
        "unseen": [json.dumps(inputs) for inputs in batch.unseen],  # levels the model never saw
    })


def _sent_history(deals: pd.DataFrame) -> dict[str, Any]:
    """The scorer's history columns from the deals file's, refused where the service would refuse them: each
    value typed as its schema types it (model.validation.validate_client_history), then the parts checked
    together (model.records.history_problems: whole, dated by the deal's creation, agreeing)."""
    present = [name for name in SENT_HISTORY_COLUMNS if name in deals.columns]
    if not present:
        return {}
    # Every problem at once: the values' own first stopped the run before the parts were checked together.
    unreadable_values = ProblemList()
    raw = deals[present].reset_index(drop=True)
    # Dated as the rest of the deals table: in the mapping file's date_format when it gives one.
    typed = validate_client_history(raw, collect=unreadable_values, date_format=deals.attrs.get(DATE_FORMAT_ATTR))
    n = len(deals)
    # (rows with a value that did not read are not checked together: their gap is that value, already said; a
    # null marker, "null" or "n/a", is no value, and a history it leaves partial is refused below)
    unreadable = np.zeros(n, dtype=bool)
    for name in present:
        sent = raw[name].map(lambda v: not (isinstance(v, str) and v.strip().casefold() in {"", *NULL_MARKERS}))
        unreadable |= (raw[name].notna() & sent & typed[name].isna()).to_numpy()
    values = {name: typed[name].to_numpy(dtype=object) if name in typed else np.full(n, None, dtype=object)
              for name in SENT_HISTORY_COLUMNS}
    created = (pd.to_datetime(deals["created_at"]) if "created_at" in deals.columns
               else pd.Series(pd.NaT, index=deals.index))
    today = utc_today()
    found: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    for i, day in enumerate(created):
        row = [None if pd.isna(v) else (v.date() if isinstance(v, pd.Timestamp) else v)
               for v in (values[column][i] for column in SENT_HISTORY_COLUMNS)]
        if all(v is None for v in row) or unreadable[i]:
            continue
        dated = not pd.isna(day)
        won, amount, first, last = row
        for name, expected, got in history_problems(won, amount, first, last, day.date() if dated else today, dated):
            # One line per field and kind of problem, however many rows: the kind without its row's figures.
            found.setdefault((name, re.sub(r"[\d.,-]+", "#", expected)), []).append((i + 1, expected, got))
    if found or unreadable_values.items:
        raise ContractViolation("client history in the deals file is not usable", [*unreadable_values.items, *[
            Problem(name, cases[0][1] + (" (as in the first row listed)" if len(cases) > 1 else ""), cases[0][2],
                    table="deals", rows=tuple(r for r, _, _ in cases[:5]), count=len(cases))
            for (name, _), cases in found.items()]])
    out: dict[str, Any] = {name: np.asarray(typed[name], dtype=np.float64) if name in typed else np.full(n, np.nan)
                           for name in ("won_deals", "won_amount")}
    for name in ("first_won_at", "last_won_at"):
        out[name.replace("_at", "_day")] = day_numbers(typed[name]) if name in typed else np.full(n, np.nan)
    return out


def feature_kinds(model: Any) -> dict[str, str]:
    """How the model's input columns are typed ("number" or "text"), named as load_dataset's `kinds`.

    A client attribute (industry, size, region) is a feature under its own name whether it comes in the
    deals file or through the clients table, so it is named both ways.
    """
    spec = model.spec
    kinds = {**dict.fromkeys(spec.categorical, "text"), **dict.fromkeys(spec.numeric, "number")}
    kinds.update({f"clients.{name}": kind for name, kind in kinds.items() if name in CLIENT_ATTRIBUTES})
    # A clients table's extra column X is the feature client_X.
    kinds.update({f"clients.{name[len(CLIENT_EXTRA_PREFIX):]}": kinds[name] for name in spec.client_extras or ()})
    return profile_kinds(model) | kinds


def profile_kinds(model: Any) -> dict[str, str]:
    """The clients columns the model's ideal profiles segment by: banded numbers or text levels."""
    profiles = getattr(model, "profiles", None)
    if profiles is None:
        return {}
    encoder = profiles.encoder
    return {f"clients.{name}": "number" if name in encoder.bands else "text"
            for name in encoder.attributes if name != TENURE}


def score_file(model_dir: str, deals: str, clients: str | None, holdings: str | None, mapping: str | None,
               out: str, warn: Callable[[str], None] | None = None) -> int:
    model, metadata = load_artifact(model_dir)
    dataset = load_dataset(deals, clients, holdings, mapping, for_training=False, kinds=feature_kinds(model))
    if dataset.deals.empty:  # a nightly export of no new deals: an empty file, and no advice on its columns
        write_csv_atomically(score_frame(model, dataset.deals, dataset.clients), out)
        if warn is not None:
            warn("the deals table has no rows: nothing to score (the output holds the header alone)")
        return 0
    for note in (dataset.unlinked_clients_note(), dataset.client_id_spellings_note(),
                 _prospects_note(model, dataset.deals, dataset.clients), _unseen_products_note(model, dataset.deals)):
        if note and warn is not None:
            warn(note)
    absent = missing_feature_columns(model, dataset.deals, dataset.clients)
    if absent and warn is not None:
        # Legal (every input is optional when scoring), but a renamed export column changes every score
        # silently: the model reads it as missing in every deal.
        warn(f"the deals table has no column for {len(absent)} of the model's inputs: {', '.join(absent)}; "
             "every deal is scored with them missing (if the export names them differently, map them in the "
             "mapping file's columns)")
    scores = score_frame(model, dataset.deals, dataset.clients)
    write_csv_atomically(scores, out)
    undated = int(dataset.deals["created_at"].isna().sum()) if "created_at" in dataset.deals else len(scores)
    if undated and warn is not None:
        # As the service does; a stage export without dates would otherwise be scored years after its data.
        warn(f"{counted(undated, 'deal')} without created_at scored as of today ({utc_today():%Y-%m-%d}, UTC): "
             "their history features are as of today")
    if warn is not None and "created_at" in dataset.deals:
        created = day_numbers(dataset.deals["created_at"])
        undated_rows = np.isnan(created)
        created[undated_rows] = day_number(utc_today())  # scored as of today, as said above
        sent = (scores["history_source"] == "request").to_numpy()
        for note in _out_of_history_notes(model, metadata, created, undated_rows, history_sent=sent):
            warn(note)
    quoted_zero = int((pd.to_numeric(dataset.deals["amount"], errors="coerce") == 0).sum()) \
        if "amount" in dataset.deals else 0
    if quoted_zero and model.value_model is not None and warn is not None:
        # An amount of 0 is no quote yet (CRMs default the field to 0): valued as a deal without one, and graded by
        # that value; the file holding 0 should not make a deal's grade A read as a mistake (the degenerate-data
        # audit: 32 of 86 such deals were A).
        warn(f"{counted(quoted_zero, 'deal')} with an amount of 0, read as no quote yet: valued by the value model "
             "(value_source 'model') and graded by that value")
    unvalued = int(scores["value"].isna().sum())
    if unvalued and model.value_model is None and warn is not None:
        # Training said so once; a file scored months later should say it where its C grades are read.
        warn(f"{counted(unvalued, 'deal')} without an amount: this model has no value model (its training data "
             "had too few won deals with an amount), so their value and expected value are empty and their grade "
             "is C")
    return len(scores)


# Days after the model's history ends from which a deal scored without its client's history is said to be read
# from stale history: a calibration audit (2026-12-06, generated CRM, 100k deals, trained on what was known at one
# date and scoring the next year's deals through the scorer) found mean p_win beyond noise below the realised rate
# from the second month on (-0.041 on 2,260 deals, z -4.8; -0.004 in the first), and -0.18 for regular clients
# within a year: their wins since are unknown, so they read new, or lost past the lost window. A model trained on
# the age of the history it reads (FeatureConfig.history_lag_days) allows for those wins, on average, as far as it
# was trained to: said only beyond.
STALE_HISTORY_DAYS = 30


def _out_of_history_notes(model: Any, metadata: dict[str, Any], created: Any, undated: Any = None,
                          history_sent: Any = None) -> list[str]:
    """Deals dated where the model's history cannot speak for them: a month or more after it ends, for a model
    that reads client history and deals that did not send it (`history_sent`: per deal), or before it begins
    (no history at all: every client a prospect)."""
    notes = []
    end, window = int(model.history.last_day), model.spec.config.lost_window_days
    aged = bool(getattr(model.spec, "has_history_age", False))
    after = model.spec.config.history_lag_days if aged else min(STALE_HISTORY_DAYS, window)
    # A model of the history's age read a deal `after` days past its history's last day + 1 in training.
    is_late = created > end + after + (1 if aged else 0)
    if history_sent is not None:
        is_late &= ~np.asarray(history_sent, dtype=bool)  # their own history stands in for the model's
    late = int(is_late.sum()) if model.spec.has_client_history else 0
    if late:
        # Undated deals are scored as of today: named as such, not as deals "created" then (an ops review).
        late_undated = int((is_late & undated).sum()) if undated is not None else 0
        which = (f"{counted(late, 'deal')} created more than {after} days after the model's history ends "
                 f"({np.datetime64(end, 'D')})" if not late_undated else
                 f"{counted(late, 'deal')} scored as of a day more than {after} days after the model's history ends "
                 f"({np.datetime64(end, 'D')}; {late_undated:,} of them {'has' if late_undated == 1 else 'have'} no "
                 f"created_at and {'is' if late_undated == 1 else 'are'} scored as of today)")
        trained = (f", further than the history's age the model was trained to allow for ({after} days)" if aged
                   else "")
        notes.append(f"{which}, without their client's history{trained}: the model knows no win since, so a client "
                     f"that won since reads newer than it is (lost, {window} days after its last known win) and its "
                     "p_win low; send the clients' history with the deals (won_deals, won_amount, first_won_at, "
                     "last_won_at) or retrain on a recent export")
    first = (metadata.get("data") or {}).get("first_deal")
    if isinstance(first, str):
        early = int((created < day_number(first)).sum())
        if early:
            notes.append(f"{counted(early, 'deal')} created before the model's history begins ({first}): scored "
                         "without any history (every client a prospect, win rates at 0.5)")
    return notes


def _profiles_as_of(paid: pd.DataFrame, clients: pd.DataFrame | None, holdings: pd.DataFrame | None, day: float,
                    warn: Callable[[str], None]) -> Any:
    """Ideal profiles fitted on what was known on the analytics day, for potential income without a model
    (CONTRACT.md lists it among the clients command's columns, --model or not): the deals paid by then and
    the holdings table's holdings held by then (None: read off those deals). None, said, when they hold no
    products to build profiles from."""
    from model.errors import InsufficientData
    from training.profiles_fit import ProfileConfig, fit_profiles

    if holdings is not None and "since" in holdings:
        holdings = holdings[~(day_numbers(holdings["since"]) > day)]
        if holdings.empty:
            warn("no potential income: no holding of the holdings table had started by the day")
            return None
    if clients is not None and "since" in clients:
        # Nor the clients who became clients later: they counted towards a segment's size (18 clients of the
        # day and 2 to come kept a segment below its minimum; 97 of 285 clients got another segment or potential).
        clients = clients[~(day_numbers(clients["since"]) > day)]
    try:
        # The holdings table at its word, as each client's income below reads it: the ideal client and the
        # clients are then measured alike.
        profiles = fit_profiles(paid, clients, holdings, with_acceptance=False, add_won_products=False)
    except InsufficientData as exc:
        warn(f"no potential income: {exc.message}")
        return None
    # Clients holding something: a clients table's other clients hold nothing and say nothing of an ideal.
    holders = sum(1 for held in profiles.known_products.values() if held)
    needed = ProfileConfig().min_segment_clients
    if holders < needed:
        warn(f"the ideal profiles rest on {counted(holders, 'client')} with products by the day (a segment "
             f"needs {needed}): read potential income as rough")
    return profiles


def _prospects_note(model: Any, deals: pd.DataFrame, clients: pd.DataFrame | None) -> str | None:
    """The deals whose client_id neither the model nor the clients table knows: scored as prospects (no history, no
    client attributes). Legal, but an export whose ids changed form ("312" for "00312") scored every deal so, with
    half the grades changed, and said nothing (an input review); training says the same of its data."""
    spec = model.spec
    reads_clients = spec.has_client_history or spec.has_client_since or spec.client_extras or any(
        name in (*spec.categorical, *spec.numeric) for name in CLIENT_ATTRIBUTES)
    if "client_id" not in deals or not reads_clients:  # a model that reads nothing of a client: nothing changes
        return None
    ids = deals["client_id"].dropna().astype(str)
    known = set(model.clients) | set(model.spec.client_keys)
    if clients is not None:
        known |= set(clients["client_id"].dropna().astype(str))
    unknown = ~ids.isin(known)
    if not unknown.any():
        return None
    example = next(iter(sorted(model.clients) or sorted(model.spec.client_keys)), None)
    return (f"{int(unknown.sum()):,} of {len(deals):,} deals name a client_id neither the model nor the clients "
            f"table knows ({ids[unknown].iloc[0]!r}, ...): scored as prospects, without client history or "
            "attributes (if most should be known, do the ids match the training export's? '00196' and '196' are "
            f"different ids{f'; the model knows ids like {example!r}' if example is not None else ''})")


def _unseen_products_note(model: Any, deals: pd.DataFrame) -> str | None:
    """The deals whose product the model never saw (up to case and spaces): scored with no history of it, as the
    products too rare to learn are. Legal (a product launched since training), but a product renamed in the CRM
    ("Acquiring Services" for "acquiring") changed 662 of 3,000 deals' scores without a word (an inputs review)."""
    if "product" not in deals or "product" not in model.spec.categorical:
        return None
    seen = model.spec.level_keys.get("product", {})
    products = deals["product"]
    unseen = unseen_levels(model.spec, "product", products.to_numpy(dtype=object))
    if not unseen.any():
        return None
    names = list(dict.fromkeys(products[unseen].astype(str)))
    shown = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
    known = ", ".join(repr(n) for n in sorted(seen)[:5]) + (", ..." if len(seen) > 5 else "")
    return (f"{int(unseen.sum()):,} of {len(deals):,} deals name a product the model never saw ({shown}): scored "
            "without its history, as a new product (if it is one renamed in the CRM, give the export its trained "
            f"name, or retrain; the model knows {known})")


def _unknown_clients_note(profiles: Any, clients: pd.DataFrame) -> str | None:
    """Without a holdings file each client holds what the model knew at training: a client the model does not know
    holds nothing, and is offered what it has (an export whose ids changed form got its held products as top gaps,
    without a word: an input review)."""
    ids = clients["client_id"].dropna().astype(str)
    unknown = ~ids.isin(set(profiles.known_attributes) | set(profiles.known_products))
    if not unknown.any():
        return None
    return (f"{int(unknown.sum()):,} of {len(ids):,} clients are unknown to the model ({ids[unknown].iloc[0]!r}, ...) "
            "and no --holdings was given: they count as holding nothing, so their gap lists may offer what they "
            "have; give the holdings file, or check that the ids match the training export's ('00196' and '196' "
            "are different ids)")


def gaps_file(model_dir: str, clients: str, holdings: str | None, mapping: str | None, out: str, top_k: int = 5,
              as_of: date | None = None, warn: Callable[[str], None] | None = None) -> int:
    from model.client_analytics import gap_table
    from model.dataset import load_tables

    model, _ = load_artifact(model_dir)
    if model.profiles is None:
        from model.errors import ArtifactError

        raise ArtifactError(f"model at {model_dir} has no ideal client profiles (its training had no "
                            "holdings: no holdings table with rows, and no client ids to read them off won deals)")
    client_frame, holding_frame = load_tables(clients, holdings, mapping, kinds=profile_kinds(model))
    table = gap_table(model.profiles, client_frame, holding_frame, top_k=top_k, as_of=as_of)
    write_csv_atomically(table, out)
    notes = [merged_spellings_of(holding_frame),
             _unknown_clients_note(model.profiles, client_frame) if holding_frame is None else None]
    for note in notes:
        if note and warn is not None:
            warn(note)
    if holding_frame is not None and warn is not None:
        products = holding_frame["product"].dropna().astype(str)
        unknown = sorted(model.profiles.unknown_products(products.unique()))
        if unknown:  # not held as far as the gap lists go: said, as /v1/gaps says unknown_products
            rows = int(products.isin(unknown).sum())
            named = [_with_nearest(name, model.profiles.products) for name in unknown[:5]]
            warn(f"{rows:,} holdings rows name products the model does not know ({', '.join(named)}"
                 f"{', ...' if len(unknown) > 5 else ''}): they count as nothing held")
    if as_of is not None and "since" in client_frame and warn is not None:
        later = int((client_frame["since"] > pd.Timestamp(as_of)).sum())
        if later:  # they were no clients yet on the day: no gap list, and no row (said, not silently left out)
            warn(f"{later:,} of {len(client_frame):,} clients became clients after {as_of:%Y-%m-%d} (their since): "
                 "no gap rows for them")
    if not model.profiles.has_income and len(table) and warn is not None:
        # 0 reads as "worth nothing"; it means "unknown" here (the column stays a number for CRM imports). A
        # holdings revenue of 0 in every row is read as not given, won deal amounts measuring income, by models
        # trained since that rule; one trained before it read it as income 0.
        why = ("its holdings table's revenue was 0 in every row at training, read then as income 0; retrain, and "
               "won deal amounts measure income" if model.profiles.summary.get("income_source") == "holdings revenue"
               else "its holdings had no revenue and no won deal amounts")
        warn(f"the model's profiles know no income ({why}): potential_income is 0 in every row and gaps are ranked "
             "by p_accept alone")
    return len(table)


def _with_nearest(name: str, products: Sequence[str]) -> str:
    nearest = nearest_spelling(name, products)
    return f"{name} (did you mean {nearest}?)" if nearest is not None else name


def clients_file(deals: str, clients: str | None, holdings: str | None, mapping: str | None, out: str,
                 as_of: date | None = None, model_dir: str | None = None,
                 lost_window_days: int | None = None, warn: Callable[[str], None] | None = None,
                 abc_shares: tuple[float, float, float] | None = None,
                 xyz_shares: tuple[float, float] | None = None) -> int:
    """The client analytics table. The lost window is `lost_window_days`, else the model's (so the table's
    status agrees with the model's client_status reasons), else 360 days. Potential income compares the ideal
    client (the model's profiles, else profiles fitted on these files as of the day) with what each client holds
    and earns on the day: the holdings file; without it, its won deals paid by then (with a model: when its
    profiles were fitted on won deals, else what the model knew)."""
    from model.client_analytics import (
        DEFAULT_XYZ_ACTIVE_SHARES,
        analytics_day,
        client_analytics,
        payment_days,
        status_windows,
    )
    from model.dataset import holdings_from_deals
    from model.grades import DEFAULT_SHARES

    model = load_artifact(model_dir)[0] if model_dir else None
    kinds = profile_kinds(model) if model is not None else None
    # The training mapping serves, but a column it maps that analytics never reads may be absent (a
    # transactions export has no manager).
    dataset = load_dataset(deals, clients, holdings, mapping, for_training=True, kinds=kinds,
                           mapped_columns_required=False)
    warn = warn or (lambda message: None)
    day = analytics_day(dataset.deals, as_of)
    paid = dataset.deals[payment_days(dataset.deals) <= day]
    profiles = (model.profiles if model is not None
                else _profiles_as_of(paid, dataset.clients, None if dataset.holdings_derived else dataset.holdings,
                                     day, warn))
    if model is not None and profiles is None:  # said, as without --model: the columns stay empty otherwise
        warn(f"no segment or potential income: the model at {model_dir} has no ideal client profiles (trained "
             "without holdings or client ids); leave out --model to fit them on these files")
    if lost_window_days is None and model is not None:
        lost_window_days = model.spec.config.lost_window_days
    held = None
    if profiles is not None:
        # Holdings read off won deals: of the deals paid by the day (read off all of them, a holding's revenue
        # summed its later wins too, and a client earned on the day what it won months after).
        held = holdings_from_deals(paid) if dataset.holdings_derived else dataset.holdings
    source = profiles.summary.get("holdings_source") if profiles is not None else None
    if model is not None and profiles is not None and dataset.holdings_derived and source == "table":
        # The profiles measured income by a holdings table's revenue: holdings read off won deals would put
        # money won beside an ideal income in other money. Without the file, what the model knew stands.
        held = None
        warn("without --holdings, each client's products and income are the model's as of training (it was "
             "fitted on a holdings table); give --holdings for them as of the day")
    elif model is not None and profiles is not None and dataset.holdings_derived and source is None:
        warn("without --holdings, products and income are read off won deals; this model does not record what "
             "its profiles were fitted on (trained before it did): if that was a holdings table, give --holdings")
    unlinked = dataset.unlinked_clients_note("no client has a won deal")
    for note in (unlinked, dataset.client_id_spellings_note()):
        if note:
            warn(note)
    spellings_note = None if dataset.holdings_derived else merged_spellings_of(dataset.holdings)
    if spellings_note:
        warn(spellings_note)
    if dataset.clients is None and not dataset.holdings_derived and dataset.holdings is not None:
        # The clients listed are the clients table's and the deals'; a holder with neither was dropped unsaid.
        dealt = set(dataset.deals["client_id"].dropna().astype(str)) if "client_id" in dataset.deals else set()
        unlisted = set(dataset.holdings["client_id"].dropna().astype(str)) - dealt
        if unlisted:
            warn(f"{counted(len(unlisted), 'client')} of the holdings with no deal not listed (without --clients, "
                 "the clients listed are the deals'): give --clients to list every client")
    table = client_analytics(dataset.deals, dataset.clients, as_of=as_of, windows=status_windows(lost_window_days),
                             profiles=profiles, holdings=held, shares=abc_shares or DEFAULT_SHARES,
                             xyz_active_shares=xyz_shares or DEFAULT_XYZ_ACTIVE_SHARES)
    for column in ("segment", "income", "ideal_income", "potential_income"):
        if column not in table:  # no profiles to say them: the same columns, empty, for a CRM import
            table[column] = pd.Series(np.nan, index=table.index, dtype=object if column == "segment" else float)
    write_csv_atomically(table, out)
    if dataset.deals.empty and dataset.undated_open_deals:
        # Set aside by load_dataset: the file had rows, only none that can be placed in time.
        warn(f"the deals table holds only {counted(dataset.undated_open_deals, 'open deal')} without created_at, "
             "set aside (no day to place them on): no client has a won deal")
    elif dataset.deals.empty:
        warn("the deals table has no rows: no client has a won deal")
    elif not table.attrs.get("money_known", True):
        fix = ("the amount column has no amount above 0 for any client's won deal closed by the as-of date"
               if "amount" in dataset.deals else "map an amount column to get them")
        warn(f"no won deal carries an amount: monetary, m_score and abc are left empty and no client is golden "
             f"({fix})")
    if not len(table) and not dataset.deals.empty:
        warn("no client to analyse: no deal names a client_id and no clients table was given (map the export's "
             "client column to client_id in the mapping file)")
    elif len(table) and (table["status"] == "prospect").all() and not unlinked:
        warn("no client had won a deal by the as-of day: every client is a prospect"
             + (" (is --as-of before the data?)" if as_of is not None else ""))
    return len(table)


__all__ = ["clients_file", "feature_kinds", "gaps_file", "profile_kinds", "score_file", "score_frame"]
