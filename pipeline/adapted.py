"""The adapted table: the base rows untouched, new rows appended, and which rows were trained."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.induce import InducedVectors
from pipeline.table import EmbeddingTable


@dataclass(frozen=True)
class AdaptedTable:
    """A table adapted from a base table.

    Attributes:
        table: base rows (same tokens, same indices) followed by the appended rows.
        base_rows: how many leading rows come from the base table.
        appended: the appended tokens, in row order (row ``base_rows + i``).
        trained_rows: base-table rows whose values training may change (shifted tokens).
    """

    table: EmbeddingTable
    base_rows: int
    appended: tuple[str, ...]
    trained_rows: tuple[int, ...] = ()

    @property
    def appended_indices(self) -> dict[str, int]:
        """Appended token -> its row index."""
        return {token: self.base_rows + i for i, token in enumerate(self.appended)}


def append_induced(base: EmbeddingTable, induced: InducedVectors) -> AdaptedTable:
    """The base table with the induced vectors appended as new rows."""
    table = base.append(induced.tokens, induced.vectors) if induced.tokens else base
    return AdaptedTable(table=table, base_rows=len(base), appended=induced.tokens)
