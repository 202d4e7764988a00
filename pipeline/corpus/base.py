"""The corpus type every source returns, and the translation of reading errors back to their source."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, SupportsIndex, overload

from pipeline.errors import InputError

if TYPE_CHECKING:
    import tensorflow as tf

# Well-formed UTF-8 and nothing else (RE2 encodes code point ranges in shortest form, without
# surrogates): checking a batch with it costs a tenth of transcoding it.
_WELL_FORMED = r"(?s)[\x{0}-\x{D7FF}\x{E000}-\x{10FFFF}]*"


@dataclass(frozen=True)
class Corpus:
    """A corpus, read as a stream of documents.

    Attributes:
        name: the source kind (``files``, ``tfds``, ``python_docs``).
        sources: what it reads (paths, ``dataset:split``), for messages and manifests.
        fingerprint: sha256 over the documents' content and how they are cut (not names or times).
        make_documents: builds the raw document dataset (``tf.string`` scalars).
        errors: bad input met while streaming: a Python reader inside tf.data records it here and
            ends its stream, and :func:`reading` raises it once the pass is over.
        make_blocks: optionally, builds the same documents in blocks of about the given number of
            bytes, for :meth:`joined`: pairs of a ``tf.string`` scalar, raw documents (holding no
            newline) joined by newlines, and how many documents it holds (``tf.int64``; with 0 the
            text is empty). Plain files of lines are read so, without a tf.data element per line.
    """

    name: str
    sources: tuple[str, ...]
    fingerprint: str
    make_documents: Callable[[], tf.data.Dataset]
    errors: list[InputError] = field(default_factory=list, compare=False)
    make_blocks: Callable[[int], tf.data.Dataset] | None = field(default=None, compare=False)

    def batches(self, size: int) -> tf.data.Dataset:
        """The documents in batches of ``size`` (``tf.string`` vectors), undecodable bytes replaced by U+FFFD.

        Transcoding a batch at a time costs a tenth of transcoding each document, and only the
        documents that are not well-formed UTF-8 are transcoded.
        """
        import tensorflow as tf

        @tf.autograph.experimental.do_not_convert  # no Python control flow: AutoGraph would only cost time
        def replace(documents: tf.Tensor) -> tf.Tensor:
            return _replaced(documents, tf.strings.regex_full_match(documents, _WELL_FORMED))

        return self.make_documents().batch(size).map(replace, num_parallel_calls=tf.data.AUTOTUNE,
                                                     deterministic=True)

    def documents(self) -> tf.data.Dataset:
        """The documents one by one (``tf.string`` scalars), undecodable bytes replaced by U+FFFD."""
        return self.batches(1024).unbatch()

    def joined(self, size: int, block_bytes: int,
               then: Callable[[tf.Tensor], tf.Tensor] | None = None) -> tf.data.Dataset:
        """The documents in groups, each one ``tf.string`` scalar: the group's documents, undecodable bytes
        replaced by U+FFFD, joined by newlines; with how many documents it holds (``tf.int64``).

        Groups are blocks of about ``block_bytes`` where the source reads blocks (``make_blocks``),
        else ``size`` documents. Either way every document is counted once and its text is the same.
        ``then`` is applied to each text in the same tf.data map (a stage fewer to build).
        """
        import tensorflow as tf

        finish = then or tf.identity
        if self.make_blocks is not None:
            @tf.autograph.experimental.do_not_convert
            def replace_block(text: tf.Tensor, documents: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
                valid = tf.strings.regex_full_match(text, _WELL_FORMED)
                lines = tf.strings.split(tf.where(valid, "", text), "\n")  # one empty line when valid
                return finish(tf.where(valid, text, _joined(_transcoded(lines)))), documents

            return self.make_blocks(block_bytes).map(replace_block, num_parallel_calls=tf.data.AUTOTUNE,
                                                     deterministic=True)

        @tf.autograph.experimental.do_not_convert
        def replace_batch(documents: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            valid = tf.strings.regex_full_match(documents, _WELL_FORMED)
            return finish(_joined(_replaced(documents, valid))), tf.size(documents, out_type=tf.int64)

        return self.make_documents().batch(size).map(replace_batch, num_parallel_calls=tf.data.AUTOTUNE,
                                                     deterministic=True)


def _replaced(documents: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """``documents`` with those not ``valid`` transcoded (without a data-dependent branch, which would
    cost more to build than to run: the valid ones are passed to the transcoder as empty strings)."""
    import tensorflow as tf

    return tf.where(valid, documents, _transcoded(tf.where(valid, "", documents)))


def _transcoded(documents: tf.Tensor) -> tf.Tensor:
    import tensorflow as tf

    return tf.strings.unicode_transcode(documents, "UTF-8", "UTF-8", errors="replace")


def _joined(documents: tf.Tensor) -> tf.Tensor:
    import tensorflow as tf

    return tf.strings.reduce_join(documents, separator="\n")


@contextmanager
def reading(corpus: Corpus) -> Iterator[None]:
    """Around a pass over ``corpus``: re-raise bad input found by a reader as its own InputError."""
    import tensorflow as tf

    try:
        yield
    except tf.errors.OpError as err:
        if corpus.errors:
            raise corpus.errors[0] from None
        if isinstance(err, tf.errors.DataLossError):  # a corrupt or truncated compressed file
            raise InputError(", ".join(corpus.sources[:3]), f"cannot read the corpus: {err.message.splitlines()[0]}",
                             hint="the file is damaged; decompress it by hand to find where") from None
        raise
    if corpus.errors:  # a reader that met bad input stops its stream and leaves the error here
        raise corpus.errors[0]


def concatenated(corpora: Sequence[Corpus], name: str) -> Corpus:
    """``corpora`` read one after the other, as one corpus.

    Args:
        corpora: the parts, in reading order.
        name: the source kind of the whole (``tfds``).

    Returns:
        A corpus whose documents are each part's in order (tf.data ``concatenate``), whose sources are
        the parts' sources, whose fingerprint is the sha256 over the parts' fingerprints in order, and
        whose errors are the parts' (bad input a part's reader records is raised by :func:`reading`
        over the whole).

    Raises:
        ValueError: no corpora.
    """
    parts = tuple(corpora)
    if not parts:
        raise ValueError("concatenated needs at least one corpus, got none")
    digest = hashlib.sha256()
    for part in parts:
        digest.update(f"{part.fingerprint}\n".encode())

    def make_documents() -> tf.data.Dataset:
        dataset = parts[0].make_documents()
        for part in parts[1:]:
            dataset = dataset.concatenate(part.make_documents())
        return dataset

    sources = tuple(source for part in parts for source in part.sources)
    return Corpus(name, sources, digest.hexdigest(), make_documents, _SharedErrors([p.errors for p in parts]))


class _SharedErrors(list[InputError]):
    """The errors lists of several corpora read as one list, live: the parts' readers keep appending to
    their own lists, and what :func:`reading` checks sees them all, in the parts' order."""

    def __init__(self, parts: Sequence[list[InputError]]) -> None:
        super().__init__()
        self._parts = tuple(parts)

    def _all(self) -> list[InputError]:
        return [error for part in (*self._parts, list(super().__iter__())) for error in part]

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self) -> Iterator[InputError]:
        return iter(self._all())

    @overload
    def __getitem__(self, index: SupportsIndex) -> InputError: ...

    @overload
    def __getitem__(self, index: slice) -> list[InputError]: ...

    def __getitem__(self, index: SupportsIndex | slice) -> InputError | list[InputError]:
        return self._all()[index]

    def __repr__(self) -> str:
        return repr(self._all())
