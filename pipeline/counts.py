"""Counting the corpus's tokens in one streaming pass over its tf.data documents."""

from __future__ import annotations

import collections
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
from tqdm import tqdm

from pipeline.corpus import Corpus
from pipeline.tokenize import Tokenizer, merged_piece_counts, piece_counts

BATCH_DOCUMENTS = 512
COUNT_BATCH_DOCUMENTS = 1024  # documents joined and lowercased per tf.data element
COUNT_BLOCK_BYTES = 1 << 20  # or bytes of whole lines, where the source reads lines in blocks
COUNT_THREADS = 2  # texts counted at once (Arrow's kernels run outside the GIL)
COUNT_MAX_PIECES = 1 << 18  # distinct pieces counted text by text (a few MiB in Arrow) before they are merged
_REPLACEMENT = "\ufffd".encode()  # U+FFFD: lowercasing neither makes nor removes one


@dataclass(frozen=True)
class TokenCounts:
    """How often each token occurs in a corpus.

    Attributes:
        counts: token -> occurrences.
        total: all token occurrences.
        documents: documents read (including those with no token).
        replaced: characters that were undecodable bytes, replaced by U+FFFD (or were U+FFFD already).
    """

    counts: dict[str, int]
    total: int
    documents: int
    replaced: int = 0


def tokenized(corpus: Corpus, tokenizer: Tokenizer, batch_documents: int = BATCH_DOCUMENTS) -> tf.data.Dataset:
    """The corpus as batches of tokenized documents (``RaggedTensor`` of strings), prefetched."""
    return (
        corpus.batches(batch_documents)
        .map(tokenizer, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def count_tokens(corpus: Corpus, tokenizer: Tokenizer, *, progress: bool = True) -> TokenCounts:
    """Count every token of ``corpus`` in one pass; memory grows with the vocabulary, not the corpus.

    The documents stream through tf.data joined in groups (:meth:`Corpus.joined`: blocks of
    about ``COUNT_BLOCK_BYTES`` where the source reads blocks, else ``COUNT_BATCH_DOCUMENTS``
    documents); each joined text is lowercased (:meth:`Tokenizer.prepare`), cut into pieces and
    counted (:func:`~pipeline.tokenize.piece_counts`, by Arrow), and the distinct pieces become
    tokens once the pass is over (:meth:`Tokenizer.tokens_of_pieces`). The tokens are those
    :meth:`Tokenizer.__call__` gives; :func:`count_tokens_tf` counts through it. The progress bar
    counts pieces, a close upper bound of the tokens.
    """
    parts: list[pa.Table] = []  # piece counts: those merged so far, then one table per text since
    unmerged = 0
    documents = 0
    replaced = 0
    pending: collections.deque[Future[tuple[pa.Table, int]]] = collections.deque()

    def add_next() -> None:
        nonlocal unmerged, replaced, parts
        part, n_replaced = pending.popleft().result()
        replaced += n_replaced
        parts.append(part)
        bar.update(pc.sum(part["n"]).as_py() or 0)
        unmerged += part.num_rows
        if unmerged > COUNT_MAX_PIECES:
            parts = [merged_piece_counts(parts)]
            unmerged = 0

    def count(text: bytes) -> tuple[pa.Table, int]:
        return piece_counts(tokenizer.spaced(tokenizer.prepare(text))), text.count(_REPLACEMENT)

    with tqdm(desc=f"count {corpus.name}", unit="tok", unit_scale=True, disable=not progress or None,
              leave=False) as bar, ThreadPoolExecutor(COUNT_THREADS, thread_name_prefix="count") as pool:
        for text, n_documents in corpus.joined(COUNT_BATCH_DOCUMENTS, COUNT_BLOCK_BYTES):
            documents += n_documents
            pending.append(pool.submit(count, text))
            if len(pending) > COUNT_THREADS:
                add_next()
        while pending:
            add_next()
    counts = tokenizer.tokens_of_pieces(merged_piece_counts(parts)) if parts else {}
    return TokenCounts(counts, sum(counts.values()), documents, replaced)


def count_tokens_tf(corpus: Corpus, tokenizer: Tokenizer, *, progress: bool = True) -> TokenCounts:
    """:func:`count_tokens` through :meth:`Tokenizer.__call__` and TensorFlow's unique-with-counts (slower)."""
    counts: Counter[bytes] = Counter()
    total = 0
    documents = 0

    def unique(batch: tf.RaggedTensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        flat = batch.flat_values
        tokens, _, occurrences = tf.unique_with_counts(flat)
        return tokens, occurrences, tf.size(flat), batch.nrows()

    dataset = tokenized(corpus, tokenizer, COUNT_BATCH_DOCUMENTS).map(unique, num_parallel_calls=tf.data.AUTOTUNE)
    with tqdm(desc=f"count {corpus.name}", unit="tok", unit_scale=True, disable=not progress or None,
              leave=False) as bar:
        for tokens, occurrences, n, rows in dataset.as_numpy_iterator():
            documents += int(rows)
            counts.update(dict(zip(tokens.tolist(), occurrences.tolist(), strict=True)))
            total += int(n)
            bar.update(int(n))
    return TokenCounts({token.decode("utf-8"): n for token, n in counts.items()}, total, documents)
