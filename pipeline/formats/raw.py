"""What every format parser returns, and the helpers they share (compressed input, token decoding)."""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from pipeline.errors import InputError
from pipeline.table import row_blocks

_MAGIC = {"gzip": b"\x1f\x8b", "bz2": b"BZh", "xz": b"\xfd7zXZ"}
_OPENERS: dict[str, Callable[..., Any]] = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}


@dataclass
class RawRows:
    """Rows as parsed from a file, before duplicate handling, filtering and limits.

    Attributes:
        tokens: one token per row.
        matrix: ``(rows, dim)`` float32 (may be a read-only memory map).
        first_line: the file line of row 0 (text formats), so row ``i`` is at ``first_line + i``;
            ``None`` for formats without lines, where messages name the row instead.
        replaced: tokens whose undecodable bytes were replaced (``unicode_errors=replace``).
    """

    tokens: list[str]
    matrix: npt.NDArray[np.float32]
    first_line: int | None = None
    replaced: int = 0

    def where(self, row: int) -> tuple[int | None, str]:
        """The line of ``row`` (or None) and a phrase naming it for messages."""
        if self.first_line is None:
            return None, f"row {row}"
        return self.first_line + row, f"line {self.first_line + row}"


def compression(path: Path) -> str:
    """``gzip``, ``bz2`` or ``xz`` by the file's magic bytes, or ``""`` for an uncompressed file."""
    with open(path, "rb") as probe:
        head = probe.read(6)
    return next((kind for kind, magic in _MAGIC.items() if head.startswith(magic)), "")


def open_binary(path: Path) -> IO[bytes]:
    """Open ``path`` for reading bytes, decompressing gzip, bz2 or xz by their magic bytes."""
    kind = compression(path)
    handle: IO[bytes] = _OPENERS[kind](path, "rb") if kind else open(path, "rb")  # noqa: SIM115 - caller closes
    return handle


def is_compressed(path: Path) -> bool:
    """Whether ``path`` starts with a gzip, bz2 or xz magic number."""
    return bool(compression(path))


def decode_token(
    raw: bytes, path: Path, where: str, line: int | None, unicode_errors: str
) -> tuple[str, bool]:
    """Decode a token's UTF-8 bytes under the ``unicode_errors`` policy.

    Returns:
        The token and whether bytes were replaced.

    Raises:
        InputError: undecodable bytes under the ``strict`` policy.
    """
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError as err:
        if unicode_errors == "strict":
            raise InputError(
                path,
                f"token {raw!r} at {where} is not valid UTF-8 ({err.reason} at byte {err.start})",
                line=line,
                hint="set embedding.unicode_errors=replace to replace such bytes with U+FFFD",
            ) from None
        return raw.decode("utf-8", errors="replace"), True


def check_writable_tokens(tokens: Sequence[str], path: Path) -> None:
    """Refuse tokens a word2vec or GloVe file cannot hold: a space ends a token, a newline a row.

    Raises:
        ValueError: names the first such token and its row.
    """
    for row, token in enumerate(tokens):
        if " " in token or "\n" in token:
            raise ValueError(f"{path}: token {token!r} at row {row} contains a space or a newline; "
                             "a word2vec or GloVe file cannot hold it (save as npy or safetensors)")




def check_finite(path: Path, tokens: Sequence[str], matrix: npt.NDArray[np.floating],
                 first_line: int | None = None) -> None:
    """Refuse a NaN or Inf value, a block of rows at a time (no matrix-sized temporary; a memory map
    is never read whole).

    Raises:
        InputError: names the first such row (its line, when ``first_line`` is given) and its token.
    """
    for start, block in row_blocks(matrix):
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            row = start + int(np.flatnonzero(bad)[0])
            if first_line is not None:
                raise InputError(path, f"row of {tokens[row]!r} has a NaN or Inf value", line=first_line + row,
                                 hint="remove or fix the row")
            raise InputError(path, f"row {row} ({tokens[row]!r}) has a NaN or Inf value",
                             hint="remove or fix the row")


def allocate_rows(path: Path, rows: int, dim: int, min_row_bytes: int, values: str = "values",
                  short: str = "") -> npt.NDArray[np.float32]:
    """The ``(rows, dim)`` matrix a header asks for, once the header is shown plausible.

    Raises:
        InputError: the (uncompressed) file is too small to hold that many rows, or the matrix does
            not fit in memory.
    """
    size = path.stat().st_size
    if not is_compressed(path) and rows * min_row_bytes > size:
        raise InputError(path, f"{short}header says {rows:,} rows of {dim} {values}, more than the file's {size:,} "
                         "bytes hold",
                         line=1, hint="fix the header's counts, or the file was cut short")
    try:
        return np.empty((rows, dim), dtype=np.float32)
    except MemoryError:
        raise InputError(path, f"header says {rows:,} x {dim}: {rows * dim * 4 / 2**30:,.1f} GiB do not fit in memory",
                         line=1, hint="fix the header, or load fewer rows with embedding.limit") from None


def progress_total(path: Path) -> int | None:
    """The byte total a progress bar can count against (unknown for compressed files)."""
    return None if is_compressed(path) else path.stat().st_size
