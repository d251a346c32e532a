"""Base class and shared vocabularies of the pipeline spec."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Every spec object rejects unknown keys: a typo is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
