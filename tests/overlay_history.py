"""The small trained history the outcome-overlay tests add reported outcomes to."""

from __future__ import annotations

import pandas as pd

from model.features import DealHistory, FeatureConfig, FeatureSpec, fit_feature_spec, frame_columns

TRAINED_IDS = ("T1", "T2", "T3", "T4")


def trained_deals() -> pd.DataFrame:
    """C1 won 100 on 2025-01-10 and 200 on 2025-02-10 and lost once (2025-03-01); C2 lost once."""
    return pd.DataFrame({
        "deal_id": list(TRAINED_IDS),
        "client_id": ["C1", "C1", "C1", "C2"],
        "created_at": pd.to_datetime(["2025-01-01", "2025-02-01", "2025-02-15", "2025-01-05"]),
        "closed_at": pd.to_datetime(["2025-01-10", "2025-02-10", "2025-03-01", "2025-01-20"]),
        "status": ["won", "won", "lost", "lost"],
        "amount": [100.0, 200.0, 50.0, 70.0],
        "product": ["p", "p", "p", "q"],
    })


def trained_history() -> tuple[FeatureSpec, DealHistory]:
    """A model's feature spec and history fitted on trained_deals() (every level kept)."""
    deals = trained_deals()
    spec = fit_feature_spec(deals, FeatureConfig(min_level_count=1), {})
    return spec, DealHistory(spec, frame_columns(deals))
