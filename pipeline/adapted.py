"""The adapted table: the base rows untouched, new rows appended, and which rows were trained."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

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
        trained_rows: base-table rows the adaptation may change (shifted tokens: moved at induction,
            then fine-tuned); every other base row is the base table's, bit for bit.
    """

    table: EmbeddingTable
    base_rows: int
    appended: tuple[str, ...]
    trained_rows: tuple[int, ...] = ()

    @property
    def appended_indices(self) -> dict[str, int]:
        """Appended token -> its row index."""
        return {token: self.base_rows + i for i, token in enumerate(self.appended)}


def append_induced(base: EmbeddingTable, induced: InducedVectors, trained: TrainedRows | None = None,
                   shifted: InducedVectors | None = None) -> AdaptedTable:
    """The base table with the induced vectors appended as new rows, and shifted rows written in.

    ``shifted`` holds the shifted tokens' starting vectors (:func:`pipeline.induce.place_shifted`);
    ``trained`` holds fine-tuned values, which win: those of new tokens replace their induced vectors,
    those of table tokens (shifted) replace their starting vectors. Shifted rows are written into the
    new matrix with one in-place scatter. Without new or shifted rows the base table itself is the
    result (no copy).
    """
    value: dict[str, npt.NDArray[np.float32]] = dict(zip(shifted.tokens, shifted.vectors, strict=True)) \
        if shifted is not None else {}
    if trained is not None:
        value.update(zip(trained.tokens, trained.vectors, strict=True))
    vectors = induced.vectors
    if trained is not None and trained.tokens:
        vectors = np.array([value.get(t, v) for t, v in zip(induced.tokens, induced.vectors, strict=True)],
                           dtype=np.float32).reshape(len(induced.tokens), base.dim)
    changed = [t for t in value if t in base]
    replace = None
    trained_rows: tuple[int, ...] = ()
    if changed:
        indices = base.indices(changed)
        replace = (indices, np.stack([value[t] for t in changed]).astype(np.float32))
        trained_rows = tuple(int(i) for i in indices)
    if not induced.tokens and replace is None:
        return AdaptedTable(table=base, base_rows=len(base), appended=())
    table = base.append(induced.tokens, vectors, replace=replace)
    return AdaptedTable(table=table, base_rows=len(base), appended=induced.tokens, trained_rows=trained_rows)
