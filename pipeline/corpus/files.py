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

    return Corpus("files", sources, fingerprint, make_documents, errors)


def _generated(generator: Callable[[], Iterator[bytes]]) -> tf.data.Dataset:
    import tensorflow as tf

    return tf.data.Dataset.from_generator(generator, output_signature=tf.TensorSpec((), tf.string))


def _line_dataset(path: Path) -> tf.data.Dataset:
    import tensorflow as tf

    kind = compression(path)
    if kind in ("", "gzip"):
        return tf.data.TextLineDataset(str(path), compression_type="GZIP" if kind else "")
    return _generated(lambda: _lines(path))


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
