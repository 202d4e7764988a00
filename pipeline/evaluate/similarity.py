"""Word similarity: Spearman's rho between the cosine of each scored pair and its human score."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

from pipeline.evaluate.files import ScoredPairs
from pipeline.evaluate.lookup import GENSIM_RESTRICT_VOCAB, Vocabulary
from pipeline.table import EmbeddingTable


@dataclass(frozen=True)
class SimilarityResult:
    """How well the table's cosines rank the pairs of a word-similarity set.

    Attributes:
        rho: Spearman's rank correlation over the covered pairs; None when it is undefined (fewer
            than two covered pairs, or constant cosines or scores).
        pearson: Pearson's correlation over the covered pairs, None when undefined.
        pairs: the pairs in the set.
        covered: the pairs whose two words both have a row in use.
    """

    rho: float | None
    pearson: float | None
    pairs: int
    covered: int

    @property
    def coverage(self) -> float:
        """The share of the pairs covered (0 for an empty set)."""
        return self.covered / self.pairs if self.pairs else 0.0


def cosines(matrix: npt.NDArray[np.float32], a: npt.NDArray[np.int64],
            b: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Cosine of rows ``a[i]`` and ``b[i]`` of ``matrix``, accumulated in float64; 0 where a row is all zeros."""
    x, y = matrix.take(a, axis=0), matrix.take(b, axis=0)
    dots = np.einsum("ij,ij->i", x, y, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64) * np.einsum("ij,ij->i", y, y, dtype=np.float64))
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def _defined(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def word_similarity(table: EmbeddingTable, pairs: ScoredPairs, *,
                    restrict_vocab: int | None = GENSIM_RESTRICT_VOCAB,
                    case_insensitive: bool = True) -> SimilarityResult:
    """Spearman's rho of cosine against human score over the pairs the table covers.

    The same figures as gensim's ``KeyedVectors.evaluate_word_pairs`` with the same options (its
    defaults are these; ``dummy4unknown=False``): a pair is covered when both words map to one of
    the first ``restrict_vocab`` rows (``None``: all rows), compared by ``str.upper()`` when
    ``case_insensitive`` (a word then takes the first row of its upper-case form). Uncovered pairs
    are left out, and counted in ``coverage``. Where gensim raises on a set with no covered pair,
    this returns coverage 0 and ``rho=None``. Rows appended beyond ``restrict_vocab`` (new domain
    tokens of a large table) are not in use unless ``restrict_vocab`` is raised or None.

    Args:
        table: the table evaluated.
        pairs: the set, from :func:`pipeline.evaluate.files.read_scored_pairs`.
        restrict_vocab: how many leading rows are in use; None for all.
        case_insensitive: compare words by their upper-case form.
    """
    vocab = Vocabulary.of(table, (w for pair in pairs.pairs for w in pair), restrict_vocab, case_insensitive)
    a = vocab.rows_of(p[0] for p in pairs.pairs)
    b = vocab.rows_of(p[1] for p in pairs.pairs)
    covered = (a >= 0) & (b >= 0)
    count = int(covered.sum())
    if count < 2:
        return SimilarityResult(None, None, len(pairs.pairs), count)
    model = cosines(table.matrix, a[covered], b[covered])
    gold = pairs.scores[covered]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        rho = float(stats.spearmanr(gold, model)[0])
        pearson = float(stats.pearsonr(gold, model)[0])
    return SimilarityResult(_defined(rho), _defined(pearson), len(pairs.pairs), count)
