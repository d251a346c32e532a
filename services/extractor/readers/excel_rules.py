"""What the two in-memory readers of a workbook share, so that they give the same batches.

The row path (:mod:`.excel`) and the columnar xls path (:mod:`.excel_columnar`) cut a sheet into
batches of the same rows, infer each column's type from the same sample (the first batch), and
turn a text column's blanks, error texts and null markers into nulls by the same rule.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from services.extractor.readers.excel_errors import ERROR_TEXTS

SAMPLE_ROWS = 20_000
BATCH_CELLS = 2_000_000
"""Cells in one batch at most: a sheet thousands of columns wide gets batches of fewer rows."""
MAX_SAFE_INT = 2**53
"""Whole numbers below this are exact as floats: beyond it a column of them stays float64."""
ERROR_ARRAY = pa.array(sorted(ERROR_TEXTS), pa.string())


def rows_per_batch(width: int) -> int:
    """Rows in a batch of a sheet ``width`` columns wide (and in the sample typing it)."""
    return max(1, min(SAMPLE_ROWS, BATCH_CELLS // width))


def checked_text(array: pa.Array, nulls: set[str]) -> tuple[pa.Array | None, bool, int]:
    """A batch of a text column with its empty texts as nulls, whether it had any, and how many
    error texts (``#N/A`` typed as text) it holds; None for the array when it holds error texts
    or null markers, which the reader then turns into nulls its own (slower) way."""
    errors = pc.sum(pc.is_in(array, ERROR_ARRAY)).as_py() or 0
    if errors or (nulls and pc.any(pc.is_in(array, pa.array(list(nulls), pa.string()))).as_py()):
        return None, False, errors
    empty = pc.equal(array, "")
    if not pc.any(empty).as_py():
        return array, False, 0
    return pc.if_else(empty, pa.scalar(None, pa.string()), array), True, 0
