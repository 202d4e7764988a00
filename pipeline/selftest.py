"""The induction self-test: hold out frequent table tokens, induce them as if new, compare with the truth."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.induce import (
    InducedVectors,
    InduceOptions,
    fit_table_subword,
    fitting_tokens,
    induce_vectors,
    uses_subword,
)
from pipeline.neighbours import nearest_rows
from pipeline.table import EmbeddingTable

if TYPE_CHECKING:
    from pipeline.cooccurrence import ContextCounts
    from pipeline.counts import TokenCounts
    from pipeline.subword import SubwordModel


@dataclass(frozen=True)
class SelfTest:
    """How well held-out tokens were placed.

    Attributes:
        size: tokens held out (and placed).
        mean_cosine: mean cosine of induced to true vectors.
        recall_at_10: share of held-out tokens whose true row is among the 10 rows nearest their
            induced vector.
        held_out: the held-out tokens' induced vectors (fine-tuning trains them as probes).
    """

    size: int
    mean_cosine: float
    recall_at_10: float
    held_out: InducedVectors | None = None

    def metrics(self) -> dict[str, float]:
        """As ``induce/selftest_*`` metrics."""
        return {"induce/selftest_size": float(self.size), "induce/selftest_mean_cosine": self.mean_cosine,
                "induce/selftest_recall_at_10": self.recall_at_10}


def selftest_pool(counts: TokenCounts, table: EmbeddingTable, options: InduceOptions) -> tuple[str, ...]:
    """The table tokens a self-test may hold out: seen at least ``fit_min_count`` times (they need
    contexts), whatever the method; the corpus pass must count their contexts."""
    if not options.selftest_size:
        return ()
    return fitting_tokens(counts, table, dataclasses.replace(options, method="auto"))


def held_out_tokens(contexts: ContextCounts, table: EmbeddingTable, counts: TokenCounts,
                    options: InduceOptions) -> tuple[str, ...]:
    """The ``options.selftest_size`` table tokens the self-test holds out (a seeded draw from its pool,
    at most half of it); none when the self-test is off or the pool is too small."""
    pool = [t for t in selftest_pool(counts, table, options) if t in contexts.index]
    size = min(options.selftest_size, len(pool) // 2)
    if size < 1:
        return ()
    rng = np.random.default_rng(options.seed)
    return tuple(pool[i] for i in sorted(rng.choice(len(pool), size=size, replace=False)))


def self_test(contexts: ContextCounts, table: EmbeddingTable, counts: TokenCounts,
              options: InduceOptions) -> SelfTest | None:
    """Hold out :func:`held_out_tokens`, induce them, and score them.

    The held-out rows are hidden from the induction (not contexts, not fitting data); nothing in
    ``table`` changes. Returns None when the self-test is off or there is nothing to hold out.
    """
    held = held_out_tokens(contexts, table, counts, options)
    return _scored(contexts, table, counts, options, held, None) if held else None


def _scored(contexts: ContextCounts, table: EmbeddingTable, counts: TokenCounts, options: InduceOptions,
            held: tuple[str, ...], subword: SubwordModel | None) -> SelfTest | None:
    """The self-test of ``held`` (``subword``: None, or a model fitted without them)."""
    induced = induce_vectors(contexts, table, counts, held, options, hidden=held, subword=subword)
    if not induced.tokens:
        return None
    truth = np.asarray(table.matrix[table.indices(induced.tokens)], dtype=np.float64)
    guess = induced.vectors.astype(np.float64)
    cosine = (truth * guess).sum(axis=1) / np.maximum(np.linalg.norm(truth, axis=1) * np.linalg.norm(guess, axis=1),
                                                      1e-12)
    top, _ = nearest_rows(table, induced.vectors, k=10)
    rows = table.indices(induced.tokens)
    recall = float(np.mean([row in hits for row, hits in zip(rows, top, strict=True)]))
    # held_out keeps the vectors, not the subword model (over 1 GiB on a 3M-row table): training needs only those
    return SelfTest(len(induced.tokens), float(cosine.mean()), recall, dataclasses.replace(induced, subword=None))


def induce_and_test(contexts: ContextCounts, table: EmbeddingTable, counts: TokenCounts, tokens: Sequence[str],
                    options: InduceOptions) -> tuple[InducedVectors, SelfTest | None]:
    """:func:`induce_vectors` for ``tokens`` and, when ``options.selftest_size`` asks, :func:`self_test`.

    One subword model serves both, fitted without the self-test's held-out rows (a few percent of
    the table): the self-test measures the model that placed ``tokens``, for the cost of one fit.
    """
    held = held_out_tokens(contexts, table, counts, options)  # none when the self-test is off
    subword = fit_table_subword(table, options, set(held)) if uses_subword(options) else None
    induced = induce_vectors(contexts, table, counts, tokens, options, subword=subword)
    return induced, _scored(contexts, table, counts, options, held, subword) if held else None
