"""Loading and saving embedding tables in every supported format, chosen by name or detected."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import numpy as np

from pipeline.atomic import temp_beside
from pipeline.errors import InputError
from pipeline.formats.cache import ParseCache, cache_key, default_cache_dir
from pipeline.formats.keras_file import check_keras_tokens, parse_keras, write_keras
from pipeline.formats.npy import parse_npy, write_vocab
from pipeline.formats.raw import RawRows, check_writable_tokens, open_binary
from pipeline.formats.safetensors_file import parse_safetensors, write_safetensors
from pipeline.formats.text import parse_text, read_header, write_text
from pipeline.formats.word2vec_binary import MAX_TOKEN_BYTES, parse_binary, write_binary
from pipeline.table import EmbeddingTable

log = logging.getLogger(__name__)

FORMATS = ("word2vec_text", "glove", "word2vec_binary", "npy", "safetensors", "keras")
TEXT_FORMATS = ("word2vec_text", "glove")
EXTENSIONS = {
    "word2vec_text": ".w2v.txt",
    "glove": ".glove.txt",
    "word2vec_binary": ".bin",
    "npy": ".npy",
    "safetensors": ".safetensors",
    "keras": ".keras",
}
DEFAULT_TENSOR = "embeddings"


@dataclass(frozen=True)
class LoadOptions:
    """How to read a table.

    Attributes:
        format: one of :data:`FORMATS`, or ``auto`` (from the extension, then the header).
        limit: keep only the first N rows (of the filtered table when ``token_filter`` is set).
        dim: the dimension the caller expects; a different one is an error.
        sha256: the file's expected sha256; verified when set.
        on_duplicate: ``error`` (default) or ``first`` (keep the first row, warn with a count).
        unicode_errors: ``strict`` (default: an error names the row) or ``replace`` (U+FFFD, counted).
        token_filter: a regular expression; only rows whose token matches it whole are kept.
        tensor: the tensor name in a safetensors file; the Embedding layer's name in a .keras file.
        vocab_path: the tokens file of an npy or safetensors table.
        cache: cache parsed text tables (``cache_dir`` or :func:`default_cache_dir`).
        progress: show progress bars.
    """

    format: str = "auto"
    limit: int | None = None
    dim: int | None = None
    sha256: str | None = None
    on_duplicate: str = "error"
    unicode_errors: str = "strict"
    token_filter: str | None = None
    tensor: str | None = None
    vocab_path: str | None = None
    cache: bool = True
    cache_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.format != "auto" and self.format not in FORMATS:
            raise ValueError(
                f"embedding.format must be auto or one of {', '.join(FORMATS)}, got {self.format!r}"
            )
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"embedding.limit must be positive, got {self.limit}")
        if self.dim is not None and self.dim <= 0:
            raise ValueError(f"embedding.dim must be positive, got {self.dim}")
        if self.on_duplicate not in ("error", "first"):
            raise ValueError(f"embedding.on_duplicate must be error or first, got {self.on_duplicate!r}")
        if self.unicode_errors not in ("strict", "replace"):
            raise ValueError(
                f"embedding.unicode_errors must be strict or replace, got {self.unicode_errors!r}"
            )
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256):
            raise ValueError(f"embedding.sha256 must be 64 hex digits, got {self.sha256!r}")
        if self.token_filter is not None:
            try:
                re.compile(self.token_filter)
            except re.error as err:
                raise ValueError(
                    f"embedding.token_filter is not a regular expression ({err}): {self.token_filter!r}"
                ) from None


def resolve_path(path: str | Path) -> Path:
    """A local path; ``pkg://package/inner/path`` names a file inside an installed package."""
    text = str(path)
    if not text.startswith("pkg://"):
        return Path(text).expanduser()
    package, _, inner = text[len("pkg://") :].partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(text, f"package {package!r} is not installed",
                         hint="install the demo extra: pip install -e '.[demo]' (or: make demo)")
    return Path(next(iter(spec.submodule_search_locations))) / inner


def format_from_name(path: Path) -> str | None:
    """The format a file name implies (``.npy``, ``.safetensors``, ``.keras``, ``.bin``, ``.glove.txt``), or None."""
    name = path.name.lower()
    for suffix in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(suffix)
    if name.endswith(".npz"):
        return "npy"  # refused with a clear message by the npy reader
    for fmt in ("npy", "safetensors", "keras", "word2vec_binary", "glove"):
        if name.endswith(EXTENSIONS[fmt]):
            return fmt
    return None


def detect_format(path: Path) -> str:
    """The format of ``path`` from its name, then its header and first row."""
    named = format_from_name(path)
    if named is not None:
        return named
    header = read_header(path)
    if header is None:
        return "glove"
    return "word2vec_text" if _first_row_is_text(path, header[1]) else "word2vec_binary"


_TEXT_VALUE_BYTES = frozenset(range(0x20, 0x7F)) | {0x09, 0x0D}


def _first_row_is_text(path: Path, dim: int) -> bool:
    """Whether the first row after a ``N D`` header holds its values as text rather than float32 bytes.

    Only the values are looked at, not the token: a text table with an undecodable token is still
    text. Text values are printable ASCII up to the newline; D raw float32 values almost never are
    (0.0 is four NUL bytes, a negative value has a byte >= 0x80).
    """
    with open_binary(path) as f:
        f.readline()
        sample = f.read(MAX_TOKEN_BYTES + 32 * min(dim, 1 << 14))  # a whole token, then its values
    _, space, rest = sample.partition(b" ")
    values = rest.split(b"\n", 1)[0]
    return bool(space and values) and all(byte in _TEXT_VALUE_BYTES for byte in values)


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_table(path: str | Path, options: LoadOptions | None = None) -> EmbeddingTable:
    """Load an embedding table.

    Args:
        path: the table file (``pkg://`` names a file inside an installed package).
        options: how to read it.

    Raises:
        InputError: a missing, empty or malformed file, or one that breaks an option (checksum,
            dimension, duplicates); the message names the file, the line and the value.
    """
    options = options or LoadOptions()
    file = resolve_path(path)
    if not file.exists():
        raise InputError(file, "file not found", hint="check embedding.path")
    if file.is_dir():
        raise InputError(file, "is a directory", hint="embedding.path must name the table file")
    if file.stat().st_size == 0:
        raise InputError(file, "file is empty", hint="expected an embedding table")
    fmt = detect_format(file) if options.format == "auto" else options.format
    if options.dim is not None and fmt in ("word2vec_text", "word2vec_binary"):
        header = read_header(file)  # refuse the wrong table before a long parse
        if header is not None and header[1] != options.dim:
            raise InputError(file, f"dimension is {header[1]}, the config expects {options.dim}", line=1,
                             hint="set embedding.dim to match, or pick the right table")
    raw = _parse_cached(file, fmt, options)
    if raw.replaced:
        log.warning("%s: %d tokens had undecodable bytes, replaced with U+FFFD", file, raw.replaced)
    raw = _drop_duplicates(file, raw, options.on_duplicate)
    tokens, matrix = raw.tokens, raw.matrix
    if options.token_filter:
        pattern = re.compile(options.token_filter)
        keep = [i for i, t in enumerate(tokens) if pattern.fullmatch(t)]
        if not keep:
            raise InputError(file, f"no token matches embedding.token_filter={options.token_filter!r}")
        tokens, matrix = [tokens[i] for i in keep], np.asarray(matrix[keep])
        if options.limit is not None:
            tokens, matrix = tokens[: options.limit], matrix[: options.limit]
    if options.dim is not None and matrix.shape[1] != options.dim:
        raise InputError(file, f"dimension is {matrix.shape[1]}, the config expects {options.dim}",
                         hint="set embedding.dim to match, or pick the right table")
    return EmbeddingTable(tokens, matrix, source=str(path))


def _verify_sha256(file: Path, expected: str) -> str:
    """The file's sha256, checked against ``expected`` (before parsing: a wrong file gets this error)."""
    actual = file_sha256(file)
    if actual != expected.lower():
        raise InputError(file, f"sha256 is {actual}, expected {expected}",
                         hint="the file differs from the one the config names; "
                         "fix embedding.sha256 or the file")
    return actual


def _parse_cached(file: Path, fmt: str, options: LoadOptions) -> RawRows:
    """Verify ``file`` against ``options.sha256`` and parse it (text formats through the cache)."""
    limit = None if options.token_filter else options.limit
    if fmt not in TEXT_FORMATS or not options.cache:
        if options.sha256:
            _verify_sha256(file, options.sha256)
        return _parse(file, fmt, options, limit)
    cache = ParseCache(Path(options.cache_dir).expanduser() if options.cache_dir else default_cache_dir())
    key = cache_key(file, format=fmt, limit=limit, unicode_errors=options.unicode_errors)
    hit = cache.load(key)
    if hit is not None:
        raw, cached_meta = hit
        log.info("%s: loaded the parsed table from the cache (%s)", file, cache.directory)
        if options.sha256 and cached_meta.get("sha256") != options.sha256.lower():
            actual = _verify_sha256(file, options.sha256)
            cache.update_meta(key, {**cached_meta, "sha256": actual})
        return raw
    meta: dict[str, object] = {"source": str(file.resolve()), "format": fmt}
    if options.sha256:
        meta["sha256"] = _verify_sha256(file, options.sha256)
    raw = _parse(file, fmt, options, limit)
    cache.store(key, raw, meta)
    return raw


def _parse(file: Path, fmt: str, options: LoadOptions, limit: int | None) -> RawRows:
    if fmt == "word2vec_text":
        return parse_text(file, header=True, limit=limit, unicode_errors=options.unicode_errors,
                          progress=options.progress)
    if fmt == "glove":
        return parse_text(file, header=False, limit=limit, unicode_errors=options.unicode_errors,
                          progress=options.progress)
    if fmt == "word2vec_binary":
        return parse_binary(file, limit=limit, unicode_errors=options.unicode_errors,
                            progress=options.progress)
    if fmt == "npy":
        return parse_npy(file, vocab_path=options.vocab_path, limit=limit)
    if fmt == "keras":
        return parse_keras(file, layer=options.tensor, limit=limit)
    return parse_safetensors(file, tensor=options.tensor, vocab_path=options.vocab_path, limit=limit)


def _drop_duplicates(file: Path, raw: RawRows, policy: str) -> RawRows:
    if len(set(raw.tokens)) == len(raw.tokens):
        return raw  # the common case, without a Python loop over every row
    first: dict[str, int] = {}
    dropped: list[int] = []
    for row, token in enumerate(raw.tokens):
        seen = first.setdefault(token, row)
        if seen == row:
            continue
        if policy == "error":
            line, where = raw.where(row)
            _, first_where = raw.where(seen)
            raise InputError(file, f"duplicate token {token!r} at {where}, first at {first_where}", line=line,
                             hint="set embedding.on_duplicate=first to keep the first row")
        dropped.append(row)
    if not dropped:
        return raw
    log.warning("%s: %d duplicate tokens, kept the first row of each (embedding.on_duplicate=first)",
                file, len(dropped))
    keep = np.setdiff1d(np.arange(len(raw.tokens)), np.asarray(dropped))
    tokens = [raw.tokens[i] for i in keep]
    return RawRows(tokens, np.asarray(raw.matrix[keep]), first_line=None, replaced=raw.replaced)


def save_table(
    table: EmbeddingTable, path: str | Path, fmt: str | None = None, *, tensor: str = DEFAULT_TENSOR
) -> None:
    """Write ``table`` to ``path`` atomically: a temporary name in the same folder, then a rename.

    Text formats are gzip-compressed when ``path`` ends with ``.gz``. npy and safetensors tables
    also write their tokens to ``<path without suffix>.vocab.txt``; a keras table holds them inside
    (a Keras model: StringLookup ``lookup``, then Embedding ``embedding``; see
    :mod:`pipeline.formats.keras_file`).
    """
    target = Path(path)
    fmt = fmt or detect_format_from_name(target)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt in TEXT_FORMATS or fmt == "word2vec_binary":
        check_writable_tokens(table.tokens, target)
    if fmt == "keras":
        check_keras_tokens(table.tokens, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, Path]] = []
    try:
        tmp = temp_beside(target)
        if fmt == "keras":
            tmp = tmp.with_name(tmp.name + EXTENSIONS["keras"])  # keras.saving.save_model wants the suffix
        written.append((tmp, target))
        tokens, matrix = table.tokens, table.matrix
        if fmt in TEXT_FORMATS or fmt == "word2vec_binary":
            with open(tmp, "wb") as raw_handle:
                handle: IO[bytes] = raw_handle
                if target.name.endswith(".gz"):
                    # name the target, not the temporary file, in the gzip header; mtime 0: reproducible
                    gz = gzip.GzipFile(filename=target.name, mode="wb", fileobj=raw_handle, mtime=0)
                    handle = cast(IO[bytes], gz)
                with handle:
                    if fmt == "word2vec_binary":
                        write_binary(handle, tokens, matrix)
                    else:
                        write_text(target, tokens, matrix, header=fmt == "word2vec_text", handle=handle)
        elif fmt == "keras":
            write_keras(tmp, tokens, matrix)
        else:
            if fmt == "npy":
                with open(tmp, "wb") as npy_handle:
                    np.save(npy_handle, np.ascontiguousarray(matrix), allow_pickle=False)
            else:
                write_safetensors(tmp, matrix, tensor)
            vocab = target.with_suffix(".vocab.txt")
            vocab_tmp = temp_beside(vocab)
            written.append((vocab_tmp, vocab))
            write_vocab(vocab_tmp, tokens)
        for tmp_path, final in written:
            os.replace(tmp_path, final)
    finally:
        for tmp_path, _ in written:
            tmp_path.unlink(missing_ok=True)


def detect_format_from_name(path: Path) -> str:
    """The format a file name asks for when writing; other text names get word2vec_text."""
    return format_from_name(path) or "word2vec_text"


__all__ = ["FORMATS", "EXTENSIONS", "LoadOptions", "load_table", "save_table", "detect_format",
           "resolve_path", "file_sha256"]
