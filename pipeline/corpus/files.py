"""Local corpus files: paths and globs; plain, gzip, bz2 or xz; a document per line or per file; JSON Lines."""

from __future__ import annotations

import glob
import hashlib
import json
import lzma
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.corpus.base import Corpus
from pipeline.errors import InputError
from pipeline.formats.raw import compression, open_binary

if TYPE_CHECKING:
    import tensorflow as tf

UNITS = ("line", "file")
EAGER_FILES = 2  # plain files read in blocks without a traced function; more take one
BINARY_SHARE = 0.3  # undecodable characters in a file's first 8 KiB above which it is taken for binary, not text
BINARY_MIN_CHARACTERS = 64  # shorter starts are never taken for binary (their bytes are replaced and counted)


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Files named by ``paths`` (globs expanded, ``**`` recursive), in order.

    Raises:
        InputError: no paths, a missing file, or a glob that matches nothing.
    """
    if not paths:
        raise InputError("corpus.paths", "no files given", hint="set corpus.paths=[a.txt,'docs/*.txt']")
    files: list[Path] = []
    for pattern in paths:
        expanded = os.path.expanduser(pattern)
        if glob.has_magic(expanded):
            matches = sorted(p for p in glob.glob(expanded, recursive=True) if os.path.isfile(p))
            if not matches:
                raise InputError(pattern, "glob matches no file", hint="check corpus.paths")
            files.extend(Path(p) for p in matches)
        else:
            path = Path(expanded)
            if not path.is_file():
                raise InputError(path, "corpus file not found", hint="check corpus.paths")
            files.append(path)
    return files


def fingerprint_files(files: Sequence[Path], how: str = "") -> str:
    """sha256 over the (decompressed) contents of ``files`` in order, and ``how`` they are cut.

    Raises:
        InputError: a damaged compressed file.
    """
    digest = hashlib.sha256(how.encode())
    for path in files:
        try:
            with open_binary(path) as f:
                while block := f.read(1 << 20):
                    digest.update(block)
        except (EOFError, OSError, lzma.LZMAError, zlib.error) as err:
            raise InputError(path, f"cannot read the corpus: {err}",
                             hint="the file is damaged; decompress it by hand to find where") from None
        digest.update(b"\0\n")
    return digest.hexdigest()


def _undecodable_share(head: bytes) -> float:
    """The share of ``head``'s characters that are undecodable bytes (U+FFFD in the text is not one)."""
    text = head.decode("utf-8", errors="replace")
    if len(text) < BINARY_MIN_CHARACTERS:  # too little to tell a binary file from a short non-UTF-8 note
        return 0.0
    bad = text.count("\ufffd") - head.decode("utf-8", errors="ignore").count("\ufffd")
    return bad / len(text)


def files_corpus(paths: Sequence[str], *, unit: str = "line", field: str | None = None) -> Corpus:
    """A corpus of local files.

    Args:
        paths: files and globs (``notes/*.txt``, ``logs/**/*.gz``).
        unit: ``line`` (a document per line) or ``file`` (a document per file).
        field: read JSON Lines and take this field of each object as the document.

    Raises:
        InputError: no paths, a missing file, a glob that matches nothing, a bad unit.
    """
    if unit not in UNITS:
        raise InputError("corpus.unit", f"must be line or file, got {unit!r}")
    if field is not None and unit != "line":
        raise InputError("corpus.field", "JSON Lines are read a document per line", hint="set corpus.unit=line")
    files = expand_paths(paths)
    fingerprint = fingerprint_files(files, f"unit={unit};field={field}")  # reads every file whole once
    for path in files:
        with open_binary(path) as f:
            head = f.read(8192)
        if b"\0" in head:
            raise InputError(path, "looks like a binary file, not text (it holds NUL bytes)",
                             hint="corpus.paths takes text files: plain, gzip, bz2 or xz")
        undecodable = _undecodable_share(head)
        if undecodable > BINARY_SHARE:
            raise InputError(path, f"looks like a binary file, or text in another encoding than UTF-8 "
                                   f"({undecodable:.0%} of the characters in its first {len(head):,} bytes are "
                                   "undecodable)",
                             hint="corpus.paths takes UTF-8 text (plain, gzip, bz2 or xz); convert other "
                                  "encodings first, e.g. iconv -f latin1 -t utf-8")
    sources = tuple(str(p) for p in files)
    errors: list[InputError] = []

    def make_documents() -> tf.data.Dataset:
        if field is not None:
            return _generated(lambda: _json_documents(files, field, errors))
        if unit == "file":
            return _generated(lambda: _file_documents(files))
        parts = [_line_dataset(path) for path in files]
        dataset = parts[0]
        for part in parts[1:]:
            dataset = dataset.concatenate(part)
        return dataset

    def make_blocks(block_bytes: int) -> tf.data.Dataset:
        return _raw_blocks(files, block_bytes)

    in_blocks = unit == "line" and field is None and not any(compression(path) for path in files)
    return Corpus("files", sources, fingerprint, make_documents, errors, make_blocks if in_blocks else None)


def _generated(generator: Callable[[], Iterator[bytes]]) -> tf.data.Dataset:
    import tensorflow as tf

    return tf.data.Dataset.from_generator(generator, output_signature=tf.TensorSpec((), tf.string))


def _line_dataset(path: Path) -> tf.data.Dataset:
    import tensorflow as tf

    kind = compression(path)
    if kind in ("", "gzip"):
        return tf.data.TextLineDataset(str(path), compression_type="GZIP" if kind else "")
    return _generated(lambda: _lines(path))


def _raw_blocks(files: Sequence[Path], block_bytes: int) -> tf.data.Dataset:
    """The bytes of plain ``files`` in blocks of ``block_bytes`` (``make_blocks`` of :class:`Corpus`).

    Each file is read by ``FixedLengthRecordDataset``, one record of the blocks and another of the
    rest, and ends with an empty element flagged True: tf.data handles a few elements per MiB
    instead of one per line, and :meth:`Corpus.joined` cuts them at line ends. A few files are
    chained as they are; more go through one traced function (``flat_map``), whose tracing costs
    less than building a dataset per file.
    """
    import tensorflow as tf

    @tf.autograph.experimental.do_not_convert  # no Python control flow: AutoGraph would only cost time
    def blocks_of(path: tf.Tensor, size: tf.Tensor) -> tf.data.Dataset:
        rest = size % block_bytes
        body = tf.data.FixedLengthRecordDataset(path, block_bytes, footer_bytes=rest)
        tail_bytes = tf.maximum(rest, 1)  # a record of 1 byte, not taken, where there is no rest
        tail = tf.data.FixedLengthRecordDataset(path, tail_bytes, header_bytes=tf.maximum(size - tail_bytes, 0))
        blocks = body.concatenate(tail.take(tf.sign(rest)))
        end = tf.data.Dataset.from_tensors((tf.constant(b""), tf.constant(True)))  # ends the file's last line
        return tf.data.Dataset.zip((blocks, tf.data.Dataset.from_tensors(False).repeat())).concatenate(end)

    sizes = tf.constant([path.stat().st_size for path in files], tf.int64)
    paths = tf.constant([str(path) for path in files])
    if len(files) > EAGER_FILES:
        return tf.data.Dataset.from_tensor_slices((paths, sizes)).flat_map(blocks_of)
    dataset = blocks_of(paths[0], sizes[0])
    for i in range(1, len(files)):
        dataset = dataset.concatenate(blocks_of(paths[i], sizes[i]))
    return dataset


def _lines(path: Path) -> Iterator[bytes]:
    with open_binary(path) as f:
        for line in f:
            yield line.rstrip(b"\r\n")


def _file_documents(files: Sequence[Path]) -> Iterator[bytes]:
    for path in files:
        with open_binary(path) as f:
            yield f.read()


def _json_documents(files: Sequence[Path], field: str, errors: list[InputError]) -> Iterator[bytes]:
    for path in files:
        with open_binary(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)[field]
                except (json.JSONDecodeError, UnicodeDecodeError) as err:
                    errors.append(InputError(path, f"not a JSON object ({err})", line=number,
                                             hint="JSON Lines hold one object per line"))
                    return
                except (KeyError, TypeError):
                    errors.append(InputError(path, f"no field {field!r} in {line[:60]!r}", line=number,
                                             hint="set corpus.field to the text field"))
                    return
                if isinstance(value, str):
                    yield value.encode("utf-8")
                elif value is not None:
                    errors.append(InputError(path, f"field {field!r} holds {type(value).__name__}, not text",
                                             line=number, hint="set corpus.field to a text field"))
                    return
