"""One streaming pass over the corpus's tf.data documents: counting its tokens, or its tokens as ids in order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
from tqdm import tqdm

from pipeline.corpus import Corpus
from pipeline.table import EmbeddingTable
from pipeline.threads import ordered_map
from pipeline.tokenize import Tokenizer, merged_piece_counts, piece_counts

BATCH_DOCUMENTS = 512
COUNT_BATCH_DOCUMENTS = 1024  # documents joined and lowercased per tf.data element
COUNT_BLOCK_BYTES = 1 << 20  # or bytes of whole lines, where the source reads lines in blocks
COUNT_THREADS = 2  # texts counted (or made ids) at once: Arrow's kernels run outside the GIL
COUNT_MAX_PIECES = 1 << 18  # distinct pieces counted text by text (a few MiB in Arrow) before a merge, at least
_REPLACEMENT = "\ufffd".encode()  # U+FFFD: lowercasing neither makes nor removes one
Result = TypeVar("Result")


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


Vocabulary = EmbeddingTable | Sequence[str]  # a table's rows, or tokens numbered by their position


def token_ids(corpus: Corpus, tokenizer: Tokenizer, vocabularies: Sequence[Vocabulary]
              ) -> Iterator[tuple[list[npt.NDArray[np.int64]], npt.NDArray[np.int64], int]]:
    """The corpus's tokens in order, a batch of documents at a time, as ids in each of ``vocabularies``.

    Yields:
        For each batch: for each vocabulary, the id of every token of the batch in it (-1 for a
        token it does not hold); the document of each token, counted from 0 in the batch; and how
        many documents the batch holds (some may have no token).

    The documents come as lines of texts (:meth:`Corpus.joined`, also what :func:`count_tokens`
    reads): each text is cut into pieces by Arrow, each distinct piece is made tokens once
    (:meth:`Tokenizer.piece_tokens`) and looked up once. For vocabularies of distinct tokens, the
    ids and documents equal :func:`token_ids_tf`'s once the batches are put end to end (tested, for
    every source); the batches differ.
    """
    yield from mapped_token_ids(corpus, tokenizer, vocabularies, lambda ids, document, n: (ids, document, n))


def mapped_token_ids(corpus: Corpus, tokenizer: Tokenizer, vocabularies: Sequence[Vocabulary],
                     then: Callable[[list[npt.NDArray[np.int64]], npt.NDArray[np.int64], int], Result]
                     ) -> Iterator[Result]:
    """``then`` of each batch of :func:`token_ids`, computed on the thread that made the batch (numpy's work
    on one batch runs beside the tokenizing of the next) and yielded in the corpus's order."""
    indexes = [vocabulary.indices if isinstance(vocabulary, EmbeddingTable) else _position_index(vocabulary)
               for vocabulary in vocabularies]

    def ids(joined: tuple[bytes, int]) -> Result:
        text, n_documents = joined
        return then(*_text_token_ids(text, n_documents, tokenizer, indexes), n_documents)

    yield from ordered_map(ids, corpus.joined(COUNT_BATCH_DOCUMENTS, COUNT_BLOCK_BYTES), COUNT_THREADS, "token_ids")


def _position_index(tokens: Sequence[str]) -> Callable[[list[str]], npt.NDArray[np.int64]]:
    index = {token: i for i, token in enumerate(tokens)}

    def indices(names: list[str]) -> npt.NDArray[np.int64]:
        get = index.get
        return np.fromiter((get(name, -1) for name in names), dtype=np.int64, count=len(names))

    return indices


def _text_token_ids(text: bytes, n_documents: int, tokenizer: Tokenizer,
                     indexes: Sequence[Callable[[list[str]], npt.NDArray[np.int64]]],
                     ) -> tuple[list[npt.NDArray[np.int64]], npt.NDArray[np.int64]]:
    """:func:`token_ids` of one text of ``n_documents`` lines (from :meth:`Corpus.joined`)."""
    prepared = tokenizer.prepare(text)  # as many newlines as ``text``: lowercasing keeps them
    newlines = np.flatnonzero(np.frombuffer(prepared, dtype=np.uint8) == 0x0A)
    offsets = np.empty(len(newlines) + 2, dtype=np.int64)  # each line with its newline (a space once spaced)
    offsets[0], offsets[1:-1], offsets[-1] = 0, newlines + 1, len(prepared)
    lines = pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets),
                                             pa.py_buffer(tokenizer.spaced(prepared)))
    split = pc.ascii_split_whitespace(lines)
    encoded = pc.dictionary_encode(pc.list_flatten(split))
    piece_of = encoded.indices.to_numpy()
    tokens, starts, per_piece = tokenizer.piece_tokens(encoded.dictionary)
    per = per_piece[piece_of]  # tokens at each piece's place
    first = np.cumsum(per) - per
    position = np.repeat(starts[piece_of], per) + np.arange(int(per.sum())) - np.repeat(first, per)
    document = np.repeat(np.repeat(np.arange(n_documents, dtype=np.int64), pc.list_value_length(split).to_numpy()), per)
    names = tokens.to_pylist()
    return [indices(names)[position] for indices in indexes], document


def token_ids_tf(corpus: Corpus, tokenizer: Tokenizer, vocabularies: Sequence[Vocabulary]
                 ) -> Iterator[tuple[list[npt.NDArray[np.int64]], npt.NDArray[np.int64], int]]:
    """:func:`token_ids` through :meth:`Tokenizer.__call__` on each document and TensorFlow hash tables
    (slower; batches of ``BATCH_DOCUMENTS`` documents)."""
    lookups = [_token_lookup(vocabulary.tokens if isinstance(vocabulary, EmbeddingTable) else vocabulary)
               for vocabulary in vocabularies]

    def ids(batch: tf.RaggedTensor) -> tuple[tuple[tf.Tensor, ...], tf.Tensor, tf.Tensor]:
        flat = batch.flat_values
        return tuple(lookup.lookup(flat) for lookup in lookups), batch.value_rowids(), batch.nrows()

    dataset = tokenized(corpus, tokenizer).map(ids, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    for found, document, n_documents in dataset.as_numpy_iterator():
        yield list(found), document, int(n_documents)


def _token_lookup(tokens: Sequence[str]) -> tf.lookup.StaticHashTable:
    """Token -> its position in ``tokens`` (int64), -1 for any other string."""
    keys = tf.constant(list(tokens), dtype=tf.string)
    values = tf.range(len(tokens), dtype=tf.int64)
    return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)


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

    def count(joined: tuple[bytes, int]) -> tuple[pa.Table, int, int]:
        text, n_documents = joined
        return piece_counts(tokenizer.spaced(tokenizer.prepare(text))), text.count(_REPLACEMENT), n_documents

    with tqdm(desc=f"count {corpus.name}", unit="tok", unit_scale=True, disable=not progress or None,
              leave=False) as bar:
        texts = corpus.joined(COUNT_BATCH_DOCUMENTS, COUNT_BLOCK_BYTES)
        for part, n_replaced, n_documents in ordered_map(count, texts, COUNT_THREADS, "count"):
            documents += n_documents
            replaced += n_replaced
            parts.append(part)
            bar.update(pc.sum(part["n"]).as_py() or 0)
            unmerged += part.num_rows
            if unmerged > max(COUNT_MAX_PIECES, parts[0].num_rows):  # as many rows as merged: linear in all
                parts = [merged_piece_counts(parts)]
                unmerged = 0
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
