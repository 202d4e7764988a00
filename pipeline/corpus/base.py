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
        make_blocks: optionally, reads the same documents in raw blocks of the given number of bytes,
            for :meth:`joined`: pairs of a ``tf.string`` scalar, a block of a file's bytes, and a
            ``tf.bool``, True for an empty element that ends a file. The documents are the files'
            lines. Plain files of lines are read so, without a tf.data element per line.
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

    def joined(self, size: int, block_bytes: int) -> Iterator[tuple[bytes, int]]:
        """The documents in groups, one document per line: each group's documents joined by newlines
        (a newline inside a document becomes a space: both only separate tokens), undecodable bytes
        replaced by U+FFFD, with how many documents it holds (never 0).

        Groups are blocks of about ``block_bytes`` cut at line ends where the source reads blocks
        (``make_blocks``), else ``size`` documents. Either way every document is counted once and its
        tokens are the same. tf.data reads (in its own threads, ahead of the caller); cutting, joining
        and checking UTF-8 are done here, on bytes: a pipeline without traced functions starts in
        a fraction of the time, which is most of the cost of a small corpus.
        """
        import tensorflow as tf

        if self.make_blocks is not None:
            blocks = self.make_blocks(block_bytes).prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
            for text, documents in _whole_lines(blocks):
                yield _valid_text(text), documents
            return
        for documents in self.make_documents().batch(size).prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
            lines = [document.replace(b"\n", b" ") for document in documents.tolist()]
            yield _valid_text(b"\n".join(lines), by_document=lines), len(lines)


def _whole_lines(blocks: Iterator[tuple[bytes, bool]]) -> Iterator[tuple[bytes, int]]:
    """Raw blocks of files (``make_blocks``: the bytes, then ``(b"", True)`` at each file's end) as
    whole lines joined by newlines, and how many, as ``TextLineDataset`` cuts them: every carriage
    return dropped, a file's last line without a newline a document unless it is empty."""
    carry = b""
    for block, file_end in blocks:
        text = carry + (block.replace(b"\r", b"") if b"\r" in block else block)
        if file_end:
            carry = b""
            if text:
                yield text, 1
            continue
        end = text.rfind(b"\n")
        if end < 0:
            carry = text
            continue
        carry = text[end + 1:]
        head = text[:end]
        yield head, head.count(b"\n") + 1


def _valid_text(text: bytes, by_document: Sequence[bytes] | None = None) -> bytes:
    """``text`` with undecodable bytes replaced by U+FFFD, document by document (lines of ``text``, or
    ``by_document``, which joined by newlines give it), as ``tf.strings.unicode_transcode`` replaces
    them; well-formed UTF-8 (checked by Python's strict decoder) is returned as it is."""
    if text.isascii():
        return text
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        import tensorflow as tf

        documents = tf.constant(list(by_document) if by_document is not None else text.split(b"\n"))
        valid = tf.strings.regex_full_match(documents, _WELL_FORMED)
        return b"\n".join(_replaced(documents, valid).numpy().tolist())
    return text


def _replaced(documents: tf.Tensor, valid: tf.Tensor) -> tf.Tensor:
    """``documents`` with those not ``valid`` transcoded (without a data-dependent branch, which would
    cost more to build than to run: the valid ones are passed to the transcoder as empty strings)."""
    import tensorflow as tf

    return tf.where(valid, documents, _transcoded(tf.where(valid, "", documents)))


def _transcoded(documents: tf.Tensor) -> tf.Tensor:
    import tensorflow as tf

    return tf.strings.unicode_transcode(documents, "UTF-8", "UTF-8", errors="replace")


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
