"""Counting the corpus's tokens in one streaming pass (tf.data batches, TensorFlow's unique-with-counts)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import tensorflow as tf
from tqdm import tqdm

from pipeline.corpus import Corpus
from pipeline.tokenize import Tokenizer

BATCH_DOCUMENTS = 512


@dataclass(frozen=True)
class TokenCounts:
    """How often each token occurs in a corpus.

    Attributes:
        counts: token -> occurrences.
        total: all token occurrences.
        documents: documents read (including those with no token).
    """

    counts: dict[str, int]
    total: int
    documents: int


def tokenized(corpus: Corpus, tokenizer: Tokenizer, batch_documents: int = BATCH_DOCUMENTS) -> tf.data.Dataset:
    """The corpus as batches of tokenized documents (``RaggedTensor`` of strings), prefetched."""
    return (
        corpus.documents()
        .batch(batch_documents)
        .map(tokenizer, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def count_tokens(corpus: Corpus, tokenizer: Tokenizer, *, progress: bool = True) -> TokenCounts:
    """Count every token of ``corpus`` in one pass; memory grows with the vocabulary, not the corpus."""
    counts: Counter[bytes] = Counter()
    total = 0
    documents = 0
    with tqdm(desc=f"count {corpus.name}", unit="tok", unit_scale=True, disable=not progress or None,
              leave=False) as bar:
        for batch in tokenized(corpus, tokenizer):
            flat = batch.flat_values
            documents += int(batch.nrows())
            if tf.size(flat) == 0:
                continue
            unique, _, occurrences = tf.unique_with_counts(flat)
            counts.update(dict(zip(unique.numpy().tolist(), occurrences.numpy().tolist(), strict=True)))
            n = int(tf.size(flat))
            total += n
            bar.update(n)
    return TokenCounts({token.decode("utf-8"): n for token, n in counts.items()}, total, documents)
