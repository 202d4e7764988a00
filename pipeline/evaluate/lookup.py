"""Which row an evaluation word maps to: the first ``restrict_vocab`` rows, case-insensitively, as gensim does."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.table import EmbeddingTable

GENSIM_RESTRICT_VOCAB = 300000


@dataclass(frozen=True)
class Vocabulary:
    """The rows an evaluation may use and how words find them.

    gensim's evaluators (``evaluate_word_pairs``, ``evaluate_word_analogies``) consider only the first
    ``restrict_vocab`` rows, and with ``case_insensitive`` compare words by their ``str.upper()``
    form, a word mapping to the first row whose token has the same upper-case form. This is that
    rule, built without a Python loop over rows.

    Attributes:
        rows: how many rows of the table are in use (the first ``rows``).
        case_insensitive: words are compared by ``str.upper()``.
    """

    rows: int
    case_insensitive: bool
    _table: EmbeddingTable
    _index: dict[str, int] | None  # None: the table's own index, every row in use, case-sensitive

    @classmethod
    def of(cls, table: EmbeddingTable, restrict_vocab: int | None = GENSIM_RESTRICT_VOCAB,
           case_insensitive: bool = True) -> Vocabulary:
        """The vocabulary of the first ``restrict_vocab`` rows of ``table`` (all rows for None).

        Raises:
            ValueError: ``restrict_vocab`` is not positive.
        """
        if restrict_vocab is not None and restrict_vocab < 1:
            raise ValueError(f"restrict_vocab must be positive or None, got {restrict_vocab}")
        rows = len(table) if restrict_vocab is None else min(restrict_vocab, len(table))
        tokens = table.tokens[:rows]
        index: dict[str, int] | None = None
        if case_insensitive:
            # later entries win in a dict: feed the rows last to first so the first row of a form wins
            index = dict(zip(map(str.upper, reversed(tokens)), range(rows - 1, -1, -1), strict=True))
        elif rows < len(table):
            index = dict(zip(tokens, range(rows), strict=True))
        return cls(rows, case_insensitive, table, index)

    def key(self, word: str) -> str:
        """The form under which ``word`` is looked up."""
        return word.upper() if self.case_insensitive else word

    def rows_of(self, words: Iterable[str]) -> npt.NDArray[np.int64]:
        """The row of each word, -1 where it has none among the rows in use."""
        if self._index is None:
            return self._table.indices(words)
        get = self._index.get
        if self.case_insensitive:
            return np.fromiter((get(w.upper(), -1) for w in words), dtype=np.int64)
        return np.fromiter((get(w, -1) for w in words), dtype=np.int64)

    def canonical(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """For rows in use, the row their token maps to (itself, or the first row of the same upper-case form)."""
        if self._index is None or not self.case_insensitive:
            return np.asarray(rows, dtype=np.int64)
        flat = np.asarray(rows, dtype=np.int64).ravel()
        unique, inverse = np.unique(flat, return_inverse=True)
        index, tokens = self._index, self._table.tokens
        mapped = np.fromiter((index[tokens[r].upper()] for r in unique.tolist()), dtype=np.int64, count=len(unique))
        return mapped[inverse].reshape(np.shape(rows))
