"""The adapted table: the base rows untouched, new rows appended, and which rows were trained."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.induce import InducedVectors
from pipeline.table import EmbeddingTable

if TYPE_CHECKING:
    from pipeline.train.rows import TrainedRows


@dataclass(frozen=True)
class AdaptedTable:
    """A table adapted from a base table.

    Attributes:
        table: base rows (same tokens, same indices) followed by the appended rows.
        base_rows: how many leading rows come from the base table.
        appended: the appended tokens, in row order (row ``base_rows + i``).
        trained_rows: base-table rows whose values training changed (shifted tokens).
    """

    table: EmbeddingTable
    base_rows: int
    appended: tuple[str, ...]
    trained_rows: tuple[int, ...] = ()

    @property
    def appended_indices(self) -> dict[str, int]:
        """Appended token -> its row index."""
        return {token: self.base_rows + i for i, token in enumerate(self.appended)}


def append_induced(base: EmbeddingTable, induced: InducedVectors, trained: TrainedRows | None = None) -> AdaptedTable:
    """The base table with the induced vectors appended as new rows, and trained rows written in.

    ``trained`` holds fine-tuned values: those of new tokens replace their induced vectors, those of
    table tokens (shifted) are written into the new matrix with one in-place scatter. Without new or
    trained rows the base table itself is the result (no copy).
    """
    vectors = induced.vectors
    replace = None
    trained_rows: tuple[int, ...] = ()
    if trained is not None and trained.tokens:
        value = dict(zip(trained.tokens, trained.vectors, strict=True))
        vectors = np.array([value.get(t, v) for t, v in zip(induced.tokens, induced.vectors, strict=True)],
                           dtype=np.float32).reshape(len(induced.tokens), base.dim)
        shifted = [t for t in trained.tokens if t in base]
        if shifted:
            indices = base.indices(shifted)
            replace = (indices, np.stack([value[t] for t in shifted]))
            trained_rows = tuple(int(i) for i in indices)
    if not induced.tokens and replace is None:
        return AdaptedTable(table=base, base_rows=len(base), appended=())
    table = base.append(induced.tokens, vectors, replace=replace)
    return AdaptedTable(table=table, base_rows=len(base), appended=induced.tokens, trained_rows=trained_rows)
