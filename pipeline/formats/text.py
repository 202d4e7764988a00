"""word2vec text (header ``N D``; fastText .vec too) and GloVe (no header): parse and write, vectorised."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from pipeline.errors import InputError
from pipeline.formats.raw import RawRows, allocate_rows, check_finite, decode_token, open_binary, progress_total
from pipeline.threads import ordered_map

BLOCK_BYTES = 4 << 20  # each block is alive in a few copies while parsed: keep it small
WRITE_ROWS = 2048  # rows formatted per call: small enough that both threads work on a small table
FORMAT_THREADS = 2  # blocks formatted at once (TensorFlow ops, outside the GIL)
_ROW_IN_ERROR = re.compile(r"at row (\d+), column (\d+)")


def read_header(path: Path) -> tuple[int, int] | None:
    """The ``(rows, dim)`` of a word2vec header on the first line, or None when there is none."""
    with open_binary(path) as f:
        first = f.readline(4096)
    parts = first.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def _iter_line_blocks(f: IO[bytes], block_bytes: int, progress: tqdm | None) -> Iterator[bytes]:
    """Yield blocks of whole lines (each ending just before a newline), streaming."""
    rest = b""
    while True:
        chunk = f.read(block_bytes)
        if progress is not None:
            progress.update(len(chunk))
        if not chunk:
            if rest.strip():
                yield rest
            return
        chunk = rest + chunk
        cut = chunk.rfind(b"\n")
        if cut < 0:
            rest = chunk
            continue
        rest = chunk[cut + 1 :]
        yield chunk[:cut]


def _count_rows_and_dim(path: Path) -> tuple[int, int]:
    """For header-less files: count non-blank lines and read the dimension off the first one."""
    rows = 0
    dim = -1
    with open_binary(path) as f:
        for block in _iter_line_blocks(f, BLOCK_BYTES, None):
            if dim < 0:
                first = block.split(b"\n", 1)[0].rstrip()
                dim = len(first.split(b" ")) - 1
            rows += sum(1 for line in block.split(b"\n") if line.strip())
    return rows, dim


def parse_text(
    path: Path, *, header: bool, limit: int | None, unicode_errors: str, progress: bool
) -> RawRows:
    """Parse a word2vec text (``header=True``) or GloVe file, streaming, into a preallocated matrix.

    Numbers are parsed by numpy's C reader a block of lines at a time; the Python loop runs per
    line (to split off the token and count values), never per number.

    Raises:
        InputError: empty file, bad header, a row with the wrong number of values, a non-numeric
            value, NaN or Inf, fewer or more rows than the header says. Messages name the line.
    """
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, "file is empty", hint="expected a word2vec or GloVe text table")
    first_line = 1
    if header:
        parsed = read_header(path)
        if parsed is None:
            with open_binary(path) as f:
                first = f.readline(200).rstrip()
            raise InputError(path, f"expected a header 'ROWS DIM', got {first[:80]!r}", line=1,
                             hint="use embedding.format=glove for files without a header")
        rows, dim = parsed
        if rows <= 0 or dim <= 0:
            raise InputError(path, f"header says {rows} rows of dimension {dim}", line=1,
                             hint="both must be positive")
        first_line = 2
    else:
        rows, dim = _count_rows_and_dim(path)
        if rows == 0:
            raise InputError(path, "file has no rows")
        if dim <= 0:
            raise InputError(path, "first row has a token and no values", line=1)
    wanted = rows if limit is None else min(rows, limit)
    matrix = allocate_rows(path, wanted, dim, min_row_bytes=2 * dim)
    tokens: list[str] = []
    replaced = 0
    line_no = first_line - 1  # line number of the last line consumed
    blank = 0
    with open_binary(path) as f, tqdm(total=progress_total(path), unit="B", unit_scale=True, desc=f"parse {path.name}",
                                       disable=not progress or None, leave=False) as bar:
        if header:
            f.readline()
        for block in _iter_line_blocks(f, BLOCK_BYTES, bar):
            lines = block.split(b"\n")
            values: list[bytes] = []
            block_first = line_no + 1
            for raw_line in lines:
                line_no += 1
                stripped = raw_line.rstrip()  # also drops fastText's trailing space and a CR
                if not stripped:
                    blank = blank or line_no  # allowed only at the end of the file
                    continue
                if blank:
                    raise InputError(path, "empty line", line=blank, hint="remove blank lines from the table")
                if len(tokens) == wanted:
                    if wanted < rows:
                        break
                    raise InputError(path, f"more rows than the header's {rows}", line=line_no,
                                     hint="fix the header's row count")
                raw_token, _, rest = stripped.partition(b" ")
                count = rest.count(b" ") + 1 if rest else 0
                if count != dim:
                    what = "too few" if count < dim else "too many"
                    raise InputError(path, f"{what} values: expected {dim}, found {count}", line=line_no,
                                     hint="every row must be a token and its values, "
                                     "separated by single spaces")
                token, was_replaced = decode_token(raw_token, path, f"line {line_no}", line_no,
                                                   unicode_errors)
                replaced += was_replaced
                tokens.append(token)
                values.append(rest)
            if values:
                start = len(tokens) - len(values)
                matrix[start : len(tokens)] = _parse_values(path, values, block_first, dim)
            if len(tokens) == wanted < rows:
                break  # a limit was reached; without one, read on so that extra rows are reported
    if len(tokens) < wanted:
        raise InputError(path, f"header says {rows} rows, file has {len(tokens)}", line=1,
                         hint="fix the header's row count, or the file was cut short")
    check_finite(path, tokens, matrix, first_line)
    return RawRows(tokens, matrix, first_line=first_line, replaced=replaced)


def _parse_values(path: Path, values: list[bytes], block_first: int, dim: int) -> npt.NDArray[np.float32]:
    try:
        parsed = np.loadtxt(io.BytesIO(b"\n".join(values)), dtype=np.float32, delimiter=" ", comments=None,
                            ndmin=2, quotechar=None)
    except ValueError as err:
        found = _ROW_IN_ERROR.search(str(err))
        line = block_first + int(found.group(1)) if found else block_first
        bad = str(err).split("'")[1] if "'" in str(err) else str(err)
        raise InputError(path, f"value {bad!r} is not a number", line=line, hint="fix the row") from None
    return parsed


def write_text(path: Path, tokens: Sequence[str], matrix: npt.NDArray[np.float32], *,
               header: bool, handle: IO[bytes]) -> None:
    """Write rows as ``token v1 v2 ...`` lines (``%.9g``: float32 values round-trip exactly).

    Values are formatted by TensorFlow's ``as_string`` (C's ``%.9g``, as Python's ``%`` gives), a
    block of ``WRITE_ROWS`` rows per call, on two threads: the op releases the GIL, and formatting
    is most of the cost of a text export. At most :data:`FORMAT_THREADS` blocks are held at once.
    Tokens must hold no space or newline (see :func:`~pipeline.formats.raw.check_writable_tokens`).
    """
    rows, dim = matrix.shape
    if header:
        handle.write(f"{rows} {dim}\n".encode())
    starts = range(0, rows, WRITE_ROWS)
    blocks = ordered_map(lambda start: _formatted_rows(matrix[start : start + WRITE_ROWS]), starts, FORMAT_THREADS,
                         "write_text")
    for start, lines in zip(starts, blocks, strict=True):
        handle.write(b"".join(b"%s %s\n" % (tokens[start + i].encode("utf-8"), line) for i, line in enumerate(lines)))


def _formatted_rows(block: npt.NDArray[np.float32]) -> list[bytes]:
    """Each row of ``block`` as its values in ``%.9g`` separated by spaces.

    TensorFlow's threads flush subnormal floats to zero, so rows holding one are formatted by Python.
    """
    import tensorflow as tf

    values = tf.strings.as_string(tf.constant(block, dtype=tf.float32), precision=9, shortest=True)
    lines: list[bytes] = tf.strings.reduce_join(values, axis=1, separator=" ").numpy().tolist()
    magnitude = np.abs(block)
    for row in np.flatnonzero(((magnitude < np.finfo(np.float32).tiny) & (magnitude > 0)).any(axis=1)):
        lines[row] = " ".join(["%.9g"] * block.shape[1]).encode() % tuple(block[row].astype(np.float64))
    return lines
