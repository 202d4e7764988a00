"""word2vec binary: a ``N D`` header line, then per row a token, a space and D little-endian float32."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from pipeline.errors import InputError
from pipeline.formats.raw import RawRows, allocate_rows, check_finite, decode_token, open_binary, progress_total

BLOCK_BYTES = 16 << 20
MAX_TOKEN_BYTES = 1 << 16


def parse_binary(path: Path, *, limit: int | None, unicode_errors: str, progress: bool) -> RawRows:
    """Parse a word2vec binary file streaming, a block of bytes at a time, into a preallocated matrix.

    Raises:
        InputError: empty file, bad header, a truncated file, undecodable token bytes under the
            ``strict`` policy, NaN or Inf.
    """
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, "file is empty", hint="expected a word2vec binary table")
    with open_binary(path) as f:
        header = f.readline(4096)
        parts = header.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise InputError(path, f"expected a header 'ROWS DIM', got {header[:80]!r}", line=1)
        rows, dim = int(parts[0]), int(parts[1])
        if rows <= 0 or dim <= 0:
            raise InputError(path, f"header says {rows} rows of dimension {dim}", line=1,
                             hint="both must be positive")
        wanted = rows if limit is None else min(rows, limit)
        matrix = allocate_rows(path, wanted, dim, min_row_bytes=4 * dim + 2, values="float32 values",
                               short="truncated: ")
        tokens: list[str] = []
        replaced = 0
        vec_bytes = 4 * dim
        with tqdm(total=progress_total(path), unit="B", unit_scale=True, desc=f"parse {path.name}",
                  disable=not progress or None, leave=False) as bar:
            reader = _Buffer(f, bar)
            offset = len(header)
            for row in range(wanted):
                raw_token = reader.take_until_space(path, row, rows, offset)
                token, was_replaced = decode_token(raw_token, path, f"row {row} (byte {offset})", None,
                                                   unicode_errors)
                replaced += was_replaced
                data = reader.take(vec_bytes)
                if len(data) < vec_bytes:
                    raise InputError(path, f"truncated: header says {rows} rows of {dim} float32 values, "
                                     f"row {row} ({token!r}) has only {len(data)} of its {vec_bytes} bytes",
                                     hint="the file was cut short; download or copy it again")
                matrix[row] = np.frombuffer(data, dtype="<f4")
                tokens.append(token)
                offset = reader.consumed
            if wanted == rows and not reader.at_end():
                raise InputError(path, f"more data after the header's {rows} rows, at byte {reader.consumed}",
                                 hint="fix the header's row count, or its dimension")
    check_finite(path, tokens, matrix)
    return RawRows(tokens, matrix, first_line=None, replaced=replaced)


class _Buffer:
    """A forward-only byte reader over a stream, refilled a block at a time."""

    def __init__(self, f: IO[bytes], bar: tqdm) -> None:
        self._f = f
        self._bar = bar
        self._buf = b""
        self._pos = 0
        self.consumed = 0

    def _fill(self) -> bool:
        chunk = self._f.read(BLOCK_BYTES)
        self._bar.update(len(chunk))
        if not chunk:
            return False
        self._buf = self._buf[self._pos :] + chunk
        self._pos = 0
        return True

    def take_until_space(self, path: Path, row: int, rows: int, offset: int) -> bytes:
        while True:
            # word2vec's C tool writes a newline after each vector; tokens never start with one
            while self._pos < len(self._buf) and self._buf[self._pos] in b"\n\r":
                self._pos += 1
                self.consumed += 1
            end = self._buf.find(b" ", self._pos)
            if end >= 0:
                token = self._buf[self._pos : end]
                self.consumed += end + 1 - self._pos
                self._pos = end + 1
                return token
            if len(self._buf) - self._pos > MAX_TOKEN_BYTES:
                raise InputError(path, f"row {row} at byte {offset}: no space within {MAX_TOKEN_BYTES} bytes",
                                 hint="not a word2vec binary file, or its header's dimension is wrong")
            if not self._fill():
                raise InputError(path, f"truncated: header says {rows} rows, the file ends after {row}",
                                 hint="the file was cut short; download or copy it again")

    def at_end(self) -> bool:
        """Whether only newlines are left (word2vec's C tool ends the last row with one)."""
        while True:
            while self._pos < len(self._buf) and self._buf[self._pos] in b"\r\n":
                self._pos += 1
                self.consumed += 1
            if self._pos < len(self._buf):
                return False
            if not self._fill():
                return True

    def take(self, n: int) -> bytes:
        while len(self._buf) - self._pos < n and self._fill():
            pass
        data = self._buf[self._pos : self._pos + n]
        self._pos += len(data)
        self.consumed += len(data)
        return data


def write_binary(handle: IO[bytes], tokens: Sequence[str], matrix: npt.NDArray[np.float32]) -> None:
    """Write rows in word2vec binary form, a newline after each vector (as word2vec's C tool does).

    Tokens must hold no space or newline (see :func:`~pipeline.formats.raw.check_writable_tokens`).
    """
    rows, dim = matrix.shape
    handle.write(f"{rows} {dim}\n".encode())
    little = np.ascontiguousarray(matrix, dtype="<f4")
    for token, vec in zip(tokens, little, strict=True):
        handle.write(token.encode("utf-8") + b" " + vec.tobytes() + b"\n")
