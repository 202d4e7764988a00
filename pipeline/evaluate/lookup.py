"""Which row an evaluation word maps to: the first ``restrict_vocab`` rows, case-insensitively, as gensim does."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import compress

import numpy as np
import numpy.typing as npt

from pipeline.table import EmbeddingTable

GENSIM_RESTRICT_VOCAB = 300000


@dataclass(frozen=True)
class Vocabulary:
    """The rows an evaluation set may use, and the row of each of its words.

    gensim's evaluators (``evaluate_word_pairs``, ``evaluate_word_analogies``) consider only the first
    ``restrict_vocab`` rows, and with ``case_insensitive`` compare words by their ``str.upper()``
    form, a word mapping to the first row whose token has the same upper-case form. This is that
    rule. gensim builds the map for every row; this one holds only the forms of the set's words
    (one pass over the rows in C, no Python loop over rows), so :meth:`rows_of` knows those words
    only: any other maps to -1.

    Attributes:
        rows: how many rows of the table are in use (the first ``rows``).
        case_insensitive: words are compared by ``str.upper()``.
    """

    rows: int
    case_insensitive: bool
    _table: EmbeddingTable = field(repr=False, compare=False)
    # upper-case form -> its first row in use, for the forms of the set's words (case_insensitive only)
    _index: dict[str, int] = field(repr=False, compare=False)

    @classmethod
    def of(cls, table: EmbeddingTable, words: Iterable[str], restrict_vocab: int | None = GENSIM_RESTRICT_VOCAB,
           case_insensitive: bool = True) -> Vocabulary:
        """The vocabulary of ``words`` over the first ``restrict_vocab`` rows of ``table`` (all rows for None).

        Raises:
            ValueError: ``restrict_vocab`` is not positive.
        """
        if restrict_vocab is not None and restrict_vocab < 1:
            raise ValueError(f"restrict_vocab must be positive or None, got {restrict_vocab}")
        rows = len(table) if restrict_vocab is None else min(restrict_vocab, len(table))
        index: dict[str, int] = {}
        if case_insensitive:
            wanted = {w.upper() for w in words}
            tokens = table.tokens
            hits = compress(range(rows), map(wanted.__contains__, map(str.upper, tokens[:rows])))
            for row in hits:  # rows in order: the first row of a form stays
                index.setdefault(tokens[row].upper(), row)
        return cls(rows, case_insensitive, table, index)

    def rows_of(self, words: Iterable[str]) -> npt.NDArray[np.int64]:
        """The row of each word, -1 where it has none among the rows in use."""
        if not self.case_insensitive:
            found = self._table.indices(words)
            found[found >= self.rows] = -1
            return found
        get = self._index.get
        return np.fromiter((get(w.upper(), -1) for w in words), dtype=np.int64)

    def canonical(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """For rows in use, the row their word maps to: the first row of the same upper-case form.

        A row whose form is none of the set's words maps to itself: it cannot be taken for one of them.
        """
        if not self.case_insensitive:
            return np.asarray(rows, dtype=np.int64)
        flat = np.asarray(rows, dtype=np.int64).ravel()
        unique, inverse = np.unique(flat, return_inverse=True)
        get, tokens = self._index.get, self._table.tokens
        mapped = np.fromiter((get(tokens[r].upper(), r) for r in unique.tolist()), dtype=np.int64, count=len(unique))
        return mapped[inverse].reshape(np.shape(rows))
