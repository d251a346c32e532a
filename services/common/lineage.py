"""Column names that carry lineage and reject reasons between the services.

Rows carry their source position in ``_sluice_line`` while they are inside the transformer;
rejected rows keep it (plus the check, column and reason) all the way into ``<table>__rejected``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

LINE = "_sluice_line"
CHECK = "_sluice_check"
COLUMN = "_sluice_column"
REASON = "_sluice_reason"
RUN_ID = "_sluice_run_id"
UNIT = "_sluice_unit"
REJECT_COLUMNS = (CHECK, COLUMN, REASON, LINE)


def line_numbers(row_offset: int, num_rows: int, header_lines: int) -> pa.Array:
    """Physical line of each record, assuming one line per record after the header lines."""
    start = row_offset + header_lines + 1
    return pa.array(np.arange(start, start + num_rows, dtype=np.int64))


PREFIX = "_sluice_"
"""Every lineage column starts with this; good rows leave the transformer without any of them."""


def strip_lineage(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch without the ``_sluice_*`` lineage columns (zero-copy)."""
    keep = [i for i, name in enumerate(batch.schema.names) if not name.startswith(PREFIX)]
    return batch if len(keep) == batch.num_columns else batch.select(keep)
