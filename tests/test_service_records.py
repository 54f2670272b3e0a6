"""model.records: request deals as scorer columns, equal to the offline frame path feature for feature."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest
from service_fixtures import (  # noqa: F401 (fixtures, registered by name)
    deal_payloads,
    fixture_service_crm,
    fixture_service_dataset,
    fixture_service_model,
    fixture_service_training,
)

from model.dataset import Dataset
from model.errors import ContractViolation
from model.features import attach_clients, build_features, frame_columns
from model.records import day_number, deal_columns, parse_date, text_value
from model.scorer import ScoringModel
from service.holder import LoadedModel


def _features(model: ScoringModel, columns: dict[str, np.ndarray]) -> np.ndarray:
    return build_features(model.spec, model.history, model.with_known_clients(columns))


def test_records_give_the_same_features_as_the_frame_path(service_dataset: Dataset,
                                                           service_model: ScoringModel) -> None:
    deals, clients = service_dataset.deals, service_dataset.clients
    offline = frame_columns(attach_clients(deals, clients))
    kinds = LoadedModel.build(service_model).kinds
    online = deal_columns(deal_payloads(deals, clients), kinds=kinds)

    expected, got = _features(service_model, offline), _features(service_model, online)
    assert got.shape == expected.shape == (len(deals), len(service_model.spec.names))
    np.testing.assert_array_equal(got, expected)
    for name in ("created_day", "closed_day", "client_since_day", "amount", "effort_hours"):
        np.testing.assert_array_equal(online[name], offline[name], err_msg=name)

    head = slice(0, 400)  # the scores of a slice: the features above already cover every deal
    offline_scores = service_model.score({k: v[head] for k, v in offline.items()})
    online_scores = service_model.score({k: v[head] for k, v in online.items()})
    np.testing.assert_array_equal(online_scores.p_win, offline_scores.p_win)
    np.testing.assert_array_equal(online_scores.expected_value, offline_scores.expected_value)
    assert online_scores.grade == offline_scores.grade
    assert online_scores.reasons == offline_scores.reasons
    assert online_scores.history_source == offline_scores.history_source


def test_records_without_clients_match_the_frame_path_without_clients(service_dataset: Dataset,
                                                                      service_model: ScoringModel) -> None:
    deals = service_dataset.deals.head(300)
    offline = frame_columns(deals)
    online = deal_columns(deal_payloads(deals), kinds=LoadedModel.build(service_model).kinds)
    np.testing.assert_array_equal(_features(service_model, online), _features(service_model, offline))


def test_a_single_deal_gives_the_same_features_alone_as_in_a_batch(service_dataset: Dataset,
                                                                   service_model: ScoringModel) -> None:
    payloads = deal_payloads(service_dataset.deals.tail(20), service_dataset.clients)
    batch = _features(service_model, deal_columns(payloads))
    for i, payload in enumerate(payloads):
        np.testing.assert_array_equal(_features(service_model, deal_columns([payload]))[0], batch[i])


def test_nested_client_history_becomes_the_override_columns() -> None:
    deals = [
        {"deal_id": "a", "created_at": "2025-03-01", "client": {
            "client_id": "C1", "industry": "retail", "since": "2020-01-01", "won_deals": 4, "won_amount": 900.0,
            "first_won_at": "2021-02-03", "last_won_at": "2025-01-31T23:30:00+05:00"}},
        {"deal_id": "b", "client_id": "C2", "created_at": "2025-03-02"},
    ]
    columns = deal_columns(deals)
    assert list(columns["client_id"]) == ["C1", "C2"]
    assert list(columns["industry"]) == ["retail", None]
    np.testing.assert_array_equal(columns["won_deals"], [4.0, np.nan])
    np.testing.assert_array_equal(columns["won_amount"], [900.0, np.nan])
    assert columns["first_won_day"][0] == day_number("2021-02-03")
    assert columns["last_won_day"][0] == day_number("2025-01-31")  # its own wall-clock date
    assert columns["client_since_day"][0] == (date(2020, 1, 1) - date(1970, 1, 1)).days
    assert np.isnan(columns["last_won_day"][1])


def test_history_sent_with_the_deal_changes_the_score_and_says_so(service_model: ScoringModel) -> None:
    known = next(iter(service_model.spec.client_keys))
    plain = {"deal_id": "a", "client_id": known, "created_at": "2025-12-01", "product": "payroll", "amount": 900}
    sent = {**plain, "client": {"client_id": known, "won_deals": 40, "won_amount": 1e6,
                                "first_won_at": "2021-01-05", "last_won_at": "2025-11-28"}}
    prospect = {**plain, "client_id": "nobody-knows-me"}
    batch = service_model.score(deal_columns([plain, sent, prospect]))
    assert batch.history_source == ["model", "request", "none"]
    assert batch.p_win[0] != batch.p_win[1]


def test_text_and_numbers_are_typed_like_the_offline_validation() -> None:
    assert text_value("  retail ") == "retail"
    assert text_value("   ") is None
    assert text_value(12) == "12"
    assert text_value(12.0) == "12"
    assert text_value(True) == "true"
    columns = deal_columns([{"deal_id": 7, "score": 3, "tier": "gold"}, {"deal_id": "8", "score": 2.5, "tier": 3}],
                           today=date(2025, 1, 1))
    assert list(columns["deal_id"]) == ["7", "8"]
    assert columns["score"].dtype == np.float64
    assert list(columns["tier"]) == ["gold", "3"]
    # The model's kinds win: a text column stays text even when a request sends numbers only.
    typed = deal_columns([{"deal_id": "1", "score": 3}], kinds={"score": "text"}, today=date(2025, 1, 1))
    assert list(typed["score"]) == ["3"]


def test_a_deal_without_created_at_is_scored_as_of_today() -> None:
    columns = deal_columns([{"deal_id": "a"}], today=date(2025, 3, 1))
    assert columns["created_day"][0] == day_number(date(2025, 3, 1))
    with pytest.raises(ContractViolation) as caught:
        deal_columns([{"deal_id": "a"}])
    assert caught.value.problems[0].field == "deals[0].created_at"


def test_text_in_a_number_column_is_reported_with_its_path() -> None:
    with pytest.raises(ContractViolation) as caught:
        deal_columns([{"deal_id": "a", "created_at": "2025-01-01", "size": "big"}], kinds={"size": "number"})
    assert [p.field for p in caught.value.problems] == ["deals[0].size"]


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-03-31", date(2024, 3, 31)),
    ("2024-03-31T10:15:00", date(2024, 3, 31)),
    ("2024-03-31T23:59:00-08:00", date(2024, 3, 31)),
    ("2024-03-31T01:00:00Z", date(2024, 3, 31)),
])
def test_dates_parse_as_iso_8601(text: str, expected: date) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["31/03/2024", "2024-13-01", "yesterday", ""])
def test_other_date_forms_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_date(text)


def test_datetime_objects_keep_their_own_date() -> None:
    moment = datetime(2024, 3, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert parse_date(moment) == date(2024, 3, 31)


def test_validated_request_deals_give_the_same_columns_as_plain_dicts() -> None:
    from service.schemas import Deal

    raw = {"deal_id": "a", "created_at": "2025-01-02", "amount": 5.0, "source": "web", "score": 2.5,
           "client": {"client_id": "C1", "industry": "retail", "won_deals": 2}}
    validated = Deal.model_validate(raw)
    from_model, from_dict = deal_columns([validated]), deal_columns([raw])
    assert set(from_model) == set(from_dict)
    assert not any(name.startswith("__") for name in from_model)
    for name in from_dict:
        np.testing.assert_array_equal(from_model[name], from_dict[name], err_msg=name)


def test_the_clients_own_attribute_wins_over_a_deal_field_of_the_same_name() -> None:
    columns = deal_columns([{"deal_id": "d1", "created_at": "2024-05-01", "industry": "retail",
                             "client": {"client_id": "k", "industry": "food"}},
                            {"deal_id": "d2", "created_at": "2024-05-01", "industry": "retail",
                             "client": {"client_id": "m"}}])
    assert columns["industry"].tolist() == ["food", "retail"]


def test_the_services_own_bookkeeping_columns_are_never_reported_as_ignored_fields() -> None:
    from model.features import OUTCOME_HISTORY_FLAG, OUTCOME_LOST_DEALS
    from model.records import unused_extra_fields

    columns = {"deal_id": 0, OUTCOME_HISTORY_FLAG: 0, OUTCOME_LOST_DEALS: 0, "amout": 0, "discount": 0}
    assert unused_extra_fields(columns, {"discount"}) == ["amout"]
