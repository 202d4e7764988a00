"""The promise check: frozen rows bit-identical, base tokens at their indices, appended tokens unique."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.adapted import AdaptedTable
from pipeline.table import EmbeddingTable, row_blocks


@dataclass(frozen=True)
class IntegrityReport:
    """What the check found.

    Attributes:
        frozen_max_abs_diff: the largest change of any frozen row's value (must be 0.0).
        frozen_changed_rows: frozen rows whose bytes differ (must be 0).
        tokens_moved: base tokens not at their original index (must be 0).
        appended_unique: appended tokens are distinct and new to the base.
    """

    frozen_max_abs_diff: float
    frozen_changed_rows: int
    tokens_moved: int
    appended_unique: bool

    @property
    def ok(self) -> bool:
        """Whether every promise holds."""
        return (self.frozen_changed_rows == 0 and self.frozen_max_abs_diff == 0.0 and self.tokens_moved == 0
                and self.appended_unique)

    def problems(self) -> str:
        """What is broken, in words ('' when nothing is)."""
        found = []
        if self.frozen_changed_rows or self.frozen_max_abs_diff:
            found.append(f"{self.frozen_changed_rows:,} frozen rows changed (largest change "
                         f"{self.frozen_max_abs_diff:g})")
        if self.tokens_moved:
            found.append(f"{self.tokens_moved:,} base tokens are not at their original index")
        if not self.appended_unique:
            found.append("appended tokens repeat each other or a base token")
        return "; ".join(found)

    def metrics(self) -> dict[str, float]:
        """The report as ``integrity/*`` metrics."""
        return {
            "integrity/frozen_max_abs_diff": self.frozen_max_abs_diff,
            "integrity/frozen_changed_rows": float(self.frozen_changed_rows),
            "integrity/tokens_moved": float(self.tokens_moved),
            "integrity/ok": float(self.ok),
        }


def check_integrity(base: EmbeddingTable, adapted: AdaptedTable) -> IntegrityReport:
    """Compare every frozen row of ``adapted`` with ``base``, bit for bit, a block of rows at a time."""
    if adapted.table.dim != base.dim:
        raise ValueError(f"adapted table has dimension {adapted.table.dim}, base has {base.dim}")
    trained = np.zeros(len(base), dtype=bool)
    trained[[i for i in adapted.trained_rows if 0 <= i < len(base)]] = True
    new = adapted.table.matrix
    max_diff = 0.0
    shared = min(len(base), len(adapted.table))
    changed = int((~trained[shared:]).sum())  # base rows the adapted table lacks
    for start, base_block in row_blocks(base.matrix[:shared]):
        stop = start + len(base_block)
        frozen = ~trained[start:stop]
        a, b = new[start:stop][frozen], base_block[frozen]
        differs = (a.view(np.uint32) != b.view(np.uint32)).any(axis=1)
        changed += int(differs.sum())
        if differs.any():
            max_diff = max(max_diff, float(np.abs(a[differs].astype(np.float64) - b[differs]).max()))
    new_tokens, base_tokens = adapted.table.tokens, base.tokens
    moved = sum(1 for i, t in enumerate(base_tokens) if i >= len(new_tokens) or new_tokens[i] != t)
    appended = new_tokens[len(base_tokens):]
    unique = len(set(appended)) == len(appended) and not any(t in base for t in appended)
    return IntegrityReport(max_diff, changed, moved, unique)
