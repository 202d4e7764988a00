"""Analogy accuracy with 3CosAdd (a : b :: c : ?), batched matrix products over blocks of rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.evaluate.files import Analogies
from pipeline.evaluate.lookup import GENSIM_RESTRICT_VOCAB, Vocabulary
from pipeline.table import EmbeddingTable, row_blocks

TOPN = 5  # gensim looks no further than its 5 best answers (most_similar(topn=5))
QUERY_BATCH = 1024
BLOCK_ROWS = 16384  # scores of QUERY_BATCH questions against a block of rows: 64 MiB of float32


@dataclass(frozen=True)
class SectionScore:
    """One section's count: ``answered`` questions have all four words among the rows in use."""

    name: str
    correct: int
    answered: int
    questions: int

    @property
    def accuracy(self) -> float | None:
        """``correct / answered``, None when no question was answered."""
        return self.correct / self.answered if self.answered else None


@dataclass(frozen=True)
class AnalogyResult:
    """Analogy accuracy, overall and per section.

    Attributes:
        sections: per section of the file, in file order.
        correct: questions answered right.
        answered: questions with all four words among the rows in use (the others are skipped).
        questions: the questions in the file.
        predicted: per question, the row given as the answer (-1 when not answered).
        right: per question, whether it was answered right.
    """

    sections: tuple[SectionScore, ...]
    correct: int
    answered: int
    questions: int
    predicted: npt.NDArray[np.int64]
    right: npt.NDArray[np.bool_]

    @property
    def accuracy(self) -> float | None:
        """``correct / answered``, None when no question was answered."""
        return self.correct / self.answered if self.answered else None

    @property
    def coverage(self) -> float:
        """The share of the questions answered (0 for an empty file)."""
        return self.answered / self.questions if self.questions else 0.0


def top_rows(matrix: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], k: int, *,
             query_batch: int = QUERY_BATCH, block_rows: int = BLOCK_ROWS) -> npt.NDArray[np.int64]:
    """The ``k`` rows of ``matrix`` with the highest cosine to each query, best first.

    One TensorFlow matrix product per block of ``block_rows`` rows and ``query_batch`` queries (on
    the GPU when TensorFlow has one), merged into a running top-k; no product is larger than
    ``query_batch x block_rows``. Rows are normalised a block at a time (a zero row scores 0); equal
    scores keep the lower row first.
    """
    import tensorflow as tf  # here, not at the top: the config schemas import this package's options

    count = len(queries)
    k = min(k, len(matrix))
    q = tf.math.l2_normalize(tf.constant(np.asarray(queries, dtype=np.float32)), axis=1)
    best_scores = tf.zeros([count, 0])
    best_index = tf.zeros([count, 0], dtype=tf.int64)
    for start, rows in row_blocks(matrix, block_rows):
        block = tf.math.l2_normalize(tf.constant(np.asarray(rows)), axis=1)
        width = min(k, int(block.shape[0]))
        scores, index = [], []
        for first in range(0, count, query_batch):
            top = tf.math.top_k(tf.matmul(q[first : first + query_batch], block, transpose_b=True), k=width)
            scores.append(top.values)
            index.append(tf.cast(top.indices, tf.int64) + start)
        merged = tf.math.top_k(tf.concat([best_scores, tf.concat(scores, axis=0)], axis=1),
                               k=min(k, int(best_scores.shape[1]) + width))
        best_index = tf.gather(tf.concat([best_index, tf.concat(index, axis=0)], axis=1), merged.indices, batch_dims=1)
        best_scores = merged.values
    return np.asarray(best_index.numpy(), dtype=np.int64)


def word_analogies(table: EmbeddingTable, analogies: Analogies, *,
                   restrict_vocab: int | None = GENSIM_RESTRICT_VOCAB, case_insensitive: bool = True,
                   query_batch: int = QUERY_BATCH, block_rows: int = BLOCK_ROWS) -> AnalogyResult:
    """Accuracy of 3CosAdd on analogy questions, per section and overall.

    The answer to ``a : b :: c : ?`` is the row nearest by cosine to ``unit(b) + unit(c) - unit(a)``
    among the first ``restrict_vocab`` rows (None: all rows), the question words excluded exactly as
    gensim's ``KeyedVectors.evaluate_word_analogies`` excludes them (its defaults are these, with
    ``dummy4unknown=False``): of the 5 best rows other than the rows of a, b and c, the first whose
    word is not a, b or c (by ``str.upper()`` when ``case_insensitive``, so case variants of the
    question words are passed over too). A question with a word not among the rows in use is
    skipped: counted in ``questions``, not in ``answered``. The figures equal gensim's, up to the
    order of rows whose scores tie in float32.

    The search is batched matrix products on TensorFlow's device (:func:`top_rows`), a block of
    ``block_rows`` rows against ``query_batch`` questions at a time, never a loop over rows.

    Args:
        table: the table evaluated.
        analogies: the questions, from :func:`pipeline.evaluate.files.read_analogies`.
        restrict_vocab: how many leading rows are searched and may hold question words; None for all.
        case_insensitive: compare words by their upper-case form.
        query_batch: questions per matrix product.
        block_rows: rows per matrix product.
    """
    if query_batch < 1 or block_rows < 1:
        raise ValueError(f"query_batch and block_rows must be positive, got {query_batch} and {block_rows}")
    vocab = Vocabulary.of(table, (w for q in analogies.questions for w in q), restrict_vocab, case_insensitive)
    matrix = table.matrix[: vocab.rows]
    count = len(analogies.questions)
    words = np.array(analogies.questions, dtype=object).reshape(count, 4)
    rows = np.stack([vocab.rows_of(words[:, j].tolist()) for j in range(4)], axis=1) if count else \
        np.zeros((0, 4), dtype=np.int64)
    answered = (rows >= 0).all(axis=1)
    asked = rows[answered]
    predicted = np.full(count, -1, dtype=np.int64)
    right = np.zeros(count, dtype=bool)
    if len(asked):
        a, b, c, expected = asked.T
        units = np.asarray(matrix[np.concatenate([a, b, c])], dtype=np.float64)
        units /= np.maximum(np.linalg.norm(units, axis=1, keepdims=True), 1e-30)
        ua, ub, uc = np.split(units, 3)
        queries = (ub + uc - ua).astype(np.float32)
        # gensim takes the topn best rows that are not a question word's row, then the first of those
        # whose upper-case form is not a question word's (case variants of a, b, c are passed over)
        candidates = top_rows(matrix, queries, TOPN + 3, query_batch=query_batch, block_rows=block_rows)
        own = (candidates == a[:, None]) | (candidates == b[:, None]) | (candidates == c[:, None])
        order = np.argsort(own, axis=1, kind="stable")[:, :TOPN]
        kept = np.take_along_axis(candidates, order, axis=1)
        valid = ~np.take_along_axis(own, order, axis=1)
        forms = vocab.canonical(kept)
        usable = valid & (forms != a[:, None]) & (forms != b[:, None]) & (forms != c[:, None])
        first = np.where(usable.any(axis=1), usable.argmax(axis=1), valid.sum(axis=1) - 1)
        picked = np.take_along_axis(kept, first[:, None].clip(0), axis=1)[:, 0]
        form = np.take_along_axis(forms, first[:, None].clip(0), axis=1)[:, 0]
        picked[first < 0] = -1
        predicted[answered] = picked
        right[answered] = (first >= 0) & (form == expected)
    section_of = analogies.section_of
    n = len(analogies.sections)
    per = zip(np.bincount(section_of, weights=right, minlength=n),
              np.bincount(section_of, weights=answered, minlength=n),
              np.bincount(section_of, minlength=n), strict=True)
    sections = tuple(SectionScore(name, int(ok), int(done), int(total))
                     for name, (ok, done, total) in zip(analogies.sections, per, strict=True))
    return AnalogyResult(sections, int(right.sum()), int(answered.sum()), count, predicted, right)
