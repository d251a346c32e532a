"""A user's step package, installed for the tests through its dist-info entry points."""

from __future__ import annotations

import pandas as pd


def clean_names(frame: pd.DataFrame, suffix: str = "") -> pd.DataFrame:
    """Title-case names, drop rows without one, add a suffix: plain pandas, index kept."""
    out = frame[frame["name"].notna()].copy()
    out["name"] = out["name"].str.title() + suffix
    return out


def explode(frame: pd.DataFrame) -> pd.DataFrame:
    raise ValueError("bad things happened in user code")


def not_a_frame(frame: pd.DataFrame) -> list[int]:
    return [1, 2]


def loses_index(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.reset_index(drop=True).iloc[1:]


def mixed_types(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["mixed"] = pd.Series([1, "a"] * (len(out) // 2) + [1] * (len(out) % 2), dtype=object)
    return out
