"""Relatedness AUC: does a related pair (a, b) score a higher cosine than a, paired with a random word?"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.table import EmbeddingTable


@dataclass(frozen=True)
class RelatednessResult:
    """AUC of related pairs against random partners, overall and split by the tokens they touch.

    Attributes:
        auc: over the covered pairs; None when fewer than three distinct words are covered (no
            partner can be drawn).
        pairs: the pairs given.
        covered: the pairs whose two words are both in the table.
        touching_auc: over the covered pairs with a word in ``touching``; None when there is none.
        touching: how many covered pairs have a word in ``touching``.
        rest_auc: over the other covered pairs; None when there is none.
        rest: how many covered pairs have no word in ``touching``.
    """

    auc: float | None
    pairs: int
    covered: int
    touching_auc: float | None = None
    touching: int = 0
    rest_auc: float | None = None
    rest: int = 0

    @property
    def coverage(self) -> float:
        """The share of the pairs covered (0 when none is given)."""
        return self.covered / self.pairs if self.pairs else 0.0


def pair_wins(vectors: npt.NDArray[np.floating], a: npt.NDArray[np.int64], b: npt.NDArray[np.int64], *,
              negatives: int = 1, seed: int = 0) -> npt.NDArray[np.float64]:
    """For each pair ``(a[i], b[i])`` of rows of ``vectors``, the share of random partners it beats.

    For each pair, ``negatives`` rows ``r`` are drawn uniformly (seeded) among the rows of
    ``vectors``, never ``a[i]`` or ``b[i]``; the pair wins against ``r`` when cos(a, b) > cos(a, r),
    a tie counting half. The draws are those of ``bench/quality.py``'s ``auc``, so the same words in
    the same order give the same figure. Needs at least three rows.
    """
    if len(vectors) < 3:
        raise ValueError(f"random partners need at least 3 distinct words, got {len(vectors)}")
    m = np.asarray(vectors, dtype=np.float64)
    m = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    r = rng.integers(0, len(m), size=(len(a), negatives))
    bad = (r == a[:, None]) | (r == b[:, None])
    while bad.any():
        r[bad] = rng.integers(0, len(m), size=int(bad.sum()))
        bad = (r == a[:, None]) | (r == b[:, None])
    positive = np.einsum("ij,ij->i", m[a], m[b])[:, None]
    negative = np.einsum("ij,ikj->ik", m[a], m[r])
    wins: npt.NDArray[np.float64] = ((positive > negative) + 0.5 * (positive == negative)).mean(axis=1)
    return wins


def _mean(values: npt.NDArray[np.float64]) -> float | None:
    return float(values.mean()) if len(values) else None


def relatedness_auc(table: EmbeddingTable, pairs: Sequence[tuple[str, str]], *, negatives: int = 1, seed: int = 0,
                    touching: Collection[str] | None = None) -> RelatednessResult:
    """AUC of cos(a, b) against cos(a, r) over related pairs, r a seeded random word of the pairs.

    Pairs with a word not in the table (exact match, every row in use) are left out and counted in
    ``coverage``; the partners are drawn among the words of the covered pairs. With ``touching``
    (new or shifted tokens, say), the covered pairs are also split into those with a word in it and
    the rest, each scored against the same draws.

    Args:
        table: the table evaluated.
        pairs: ``(a, b)`` related pairs, from :func:`pipeline.evaluate.files.read_pairs`.
        negatives: partners drawn per pair (1 is the usual protocol; 50 gives a steadier figure).
        seed: seeds the draws.
        touching: tokens whose pairs are also scored apart.

    Raises:
        ValueError: ``negatives`` is not positive.
    """
    if negatives < 1:
        raise ValueError(f"negatives must be positive, got {negatives}")
    kept = [(x, y) for x, y in pairs if x in table and y in table]
    words = sorted({w for p in kept for w in p})
    result = RelatednessResult(None, len(pairs), len(kept))
    if len(words) < 3:
        return result
    where = {w: i for i, w in enumerate(words)}
    a = np.fromiter((where[x] for x, _ in kept), dtype=np.int64, count=len(kept))
    b = np.fromiter((where[y] for _, y in kept), dtype=np.int64, count=len(kept))
    wins = pair_wins(table.matrix[table.indices(words)], a, b, negatives=negatives, seed=seed)
    if touching is None:
        return RelatednessResult(_mean(wins), len(pairs), len(kept))
    special = set(touching)
    near = np.fromiter(((x in special) or (y in special) for x, y in kept), dtype=bool, count=len(kept))
    return RelatednessResult(_mean(wins), len(pairs), len(kept), _mean(wins[near]), int(near.sum()),
                             _mean(wins[~near]), int((~near).sum()))
