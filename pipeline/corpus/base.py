"""The corpus type every source returns, and the translation of reading errors back to their source."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.errors import InputError

if TYPE_CHECKING:
    import tensorflow as tf


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
    """

    name: str
    sources: tuple[str, ...]
    fingerprint: str
    make_documents: Callable[[], tf.data.Dataset]
    errors: list[InputError] = field(default_factory=list, compare=False)

    def batches(self, size: int) -> tf.data.Dataset:
        """The documents in batches of ``size`` (``tf.string`` vectors), undecodable bytes replaced by U+FFFD.

        Transcoding a batch at a time costs a tenth of transcoding each document.
        """
        import tensorflow as tf

        return self.make_documents().batch(size).map(
            lambda text: tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace"),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    def documents(self) -> tf.data.Dataset:
        """The documents one by one (``tf.string`` scalars), undecodable bytes replaced by U+FFFD."""
        return self.batches(1024).unbatch()


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
