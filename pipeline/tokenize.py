"""Turning documents into tokens: TensorFlow string ops in tf.data pipelines, and the same rules on joined text."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa
    import tensorflow as tf

log = logging.getLogger(__name__)

_ASCII_ALNUM = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_CAPITAL_SIGMA = "\u03a3".encode()
PIECES_AT_ONCE = 1 << 18  # distinct pieces made tokens in one go (those holding non-ASCII go through TensorFlow)


@dataclass(frozen=True)
class TokenizerOptions:
    """How documents become tokens.

    A token is a run of letters, digits and the ``inner`` characters, with ``inner`` characters
    stripped from its ends; it must hold a letter, have ``min_length`` to ``max_length``
    characters and, when ``pattern`` is set, match it whole. Letters and digits are Unicode's
    (``\\pL``, ``\\pN``): ``über`` and ``naïve`` are tokens, ``3.11`` is not. With the default
    ``inner="_-'"``, ``os_path``, ``read-only`` and ``don't`` stay whole and ``os.path`` gives
    ``os`` and ``path``; add ``.`` (``inner="_-'."``) to keep ``os.path`` and ``v1.2`` whole
    (a sentence's final dot is still stripped: ``e.g.`` gives ``e.g``).

    Attributes:
        lowercase: lowercase before splitting (match an uncased table such as MiniLM's).
        inner: punctuation kept inside tokens.
        min_length: shortest token, in characters.
        max_length: longest token, in characters.
        pattern: a regular expression (RE2 syntax, as TensorFlow's string ops take) every token
            must match whole, such as ``[a-z][a-z0-9_]*``; applied after lowercasing. None keeps
            every token the rules above give. Its syntax is checked when a :class:`Tokenizer`
            is built.
    """

    lowercase: bool = True
    inner: str = "_-'"
    min_length: int = 1
    max_length: int = 40
    pattern: str | None = None

    def __post_init__(self) -> None:
        if self.min_length < 1:
            raise ValueError(f"corpus.tokenizer.min_length must be at least 1, got {self.min_length}")
        if self.max_length < self.min_length:
            raise ValueError(f"corpus.tokenizer.max_length must be >= min_length ({self.min_length}), "
                             f"got {self.max_length}")
        if re.search(r"[^\W_]|\s", self.inner):
            raise ValueError(f"corpus.tokenizer.inner takes punctuation only, got {self.inner!r}")
        if self.pattern is not None and not self.pattern:
            raise ValueError("corpus.tokenizer.pattern must be a regular expression or null, got ''")


class Tokenizer:
    """Callable on a batch of documents (``tf.string``, shape ``[n]``); returns a ``RaggedTensor`` of tokens.

    For counting, the same rules apply in steps over joined text, with no per-token Python loop:
    :meth:`prepare` lowercases documents joined by newlines, :meth:`spaced` turns ASCII separators
    into spaces, :func:`piece_counts` counts the runs between them (the pieces, by Arrow), and
    :meth:`tokens_of_pieces` turns counted pieces into counted tokens, once per distinct piece.
    Pieces of ASCII are finished there; pieces holding other characters go through
    :meth:`__call__` itself, so both ways give the same tokens.
    """

    def __init__(self, options: TokenizerOptions | None = None) -> None:
        self.options = options or TokenizerOptions()
        inner = re.escape(self.options.inner)
        self._separators = rf"[^\pL\pN{inner}]+"
        self._edges = rf"^[{inner}]+|[{inner}]+$" if inner else ""
        if self.options.pattern is not None:
            _check_pattern(self.options.pattern)
        # ASCII bytes that are neither letters, digits nor inner characters become spaces; the bytes
        # of multi-byte characters stay, and the pieces holding them are tokenized by __call__.
        self._ascii_inner = bytes(sorted({ord(c) for c in self.options.inner if ord(c) < 128}))
        kept = _ASCII_ALNUM | set(self._ascii_inner) | set(range(128, 256))
        self._spaces = bytes(b if b in kept else 0x20 for b in range(256))

    def __call__(self, documents: tf.Tensor) -> tf.RaggedTensor:
        import tensorflow as tf  # here, not at the top: validating options must not pay TensorFlow's import

        text = self._lower(documents) if self.options.lowercase else documents
        runs, rows, keep = self._runs(text)
        return tf.RaggedTensor.from_value_rowids(tf.boolean_mask(runs, keep), tf.boolean_mask(rows, keep),
                                                 nrows=tf.size(text, out_type=tf.int64), validate=False)

    def _runs(self, text: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """The runs between separators of ``text`` (``[n]``, lowercased already if it is to be), flat,
        with the row each comes from and whether it is a token (all dense: no ragged op, whose first
        use in a process costs tens of milliseconds)."""
        import tensorflow as tf

        spaced = tf.strings.regex_replace(text, self._separators, " ")
        indices, runs, _ = tf.raw_ops.StringSplitV2(input=spaced, sep="")  # at white space, as tf.strings.split
        if self._edges:
            runs = tf.strings.regex_replace(runs, self._edges, "")
        lengths = tf.strings.length(runs, unit="UTF8_CHAR")
        keep = tf.strings.regex_full_match(runs, r".*\pL.*") & (lengths >= self.options.min_length) & (
            lengths <= self.options.max_length)
        if self.options.pattern is not None:
            keep &= tf.strings.regex_full_match(runs, self.options.pattern)
        return runs, indices[:, 0], keep

    @staticmethod
    def _lower(text: tf.Tensor) -> tf.Tensor:
        import tensorflow as tf

        # NUL is a separator either way, but ICU's lowercasing would end the string at it.
        return tf.strings.lower(tf.strings.regex_replace(text, r"\x00", " "), encoding="utf-8")

    def tokenize(self, text: str) -> list[str]:
        """Tokens of one string (for tests and interactive use)."""
        import tensorflow as tf

        return [t.decode("utf-8") for t in self(tf.constant([text]))[0].numpy()]

    def prepare(self, text: bytes) -> bytes:
        """Documents joined by newlines (UTF-8), made ready for :meth:`spaced`: lowercased when the options
        say so. ASCII letters are lowercased here, in Python; the pieces holding other characters are
        lowercased by :meth:`__call__`'s op when :meth:`tokens_of_pieces` tokenizes them. Text holding a
        capital sigma is lowercased whole by that op, since its lowercase (σ or final ς) depends on
        the letters around it, across separators. A newline neither is nor carries case, so
        lowercasing the joined text equals lowercasing each document."""
        if not self.options.lowercase or text.isascii() or _CAPITAL_SIGMA not in text:
            return text.lower() if self.options.lowercase else text
        import tensorflow as tf

        return self._lower(tf.constant(text)).numpy()

    def spaced(self, text: bytes) -> bytes:
        """``text`` from :meth:`prepare` with every ASCII separator made a space (0x20), the only ASCII
        white space left: its runs between spaces are the pieces (see :func:`piece_counts`)."""
        return text.translate(self._spaces)

    def tokens_of_pieces(self, pieces: pa.Table) -> dict[str, int]:
        """The tokens of distinct counted pieces (:func:`piece_counts`, :func:`merged_piece_counts`) and
        how often each occurs, in the order the tokens first appear."""
        import numpy as np
        import pyarrow as pa

        text, repeats = pieces["piece"].combine_chunks(), pieces["n"].to_numpy()
        tokens: list[pa.Array] = []
        counts: list[npt.NDArray[np.int64]] = []
        for start in range(0, len(text), PIECES_AT_ONCE):  # bounded: the non-ASCII ones become Python objects
            found, _, per_piece = self.piece_tokens(text.slice(start, PIECES_AT_ONCE))
            tokens.append(found)
            counts.append(np.repeat(repeats[start : start + PIECES_AT_ONCE], per_piece))
        if not tokens:
            return {}
        distinct, sums = _summed(pa.concat_arrays(tokens), np.concatenate(counts))
        return dict(zip(distinct.to_pylist(), sums.tolist(), strict=True))

    def piece_tokens(self, pieces: pa.Array) -> tuple[pa.Array, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The tokens in each of ``pieces`` (``large_string``, from :meth:`spaced` text), as
        :meth:`__call__` gives them: all in piece order (``large_string``), and where each piece's
        tokens start in that array and how many there are (0 to a few; ASCII pieces give 0 or 1).

        Pieces of ASCII are finished by Arrow's kernels: inner characters stripped from the ends,
        the length bounds, a letter required. Pieces holding other characters go through
        :meth:`__call__`'s ops; ``pattern`` is matched by TensorFlow's RE2 either way.
        """
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        is_ascii = pc.string_is_ascii(pieces)
        runs = pieces.filter(is_ascii)
        if self._ascii_inner:
            runs = pc.ascii_trim(runs, self._ascii_inner.decode())
        lengths = pc.binary_length(runs)
        keep = pc.and_(pc.and_(pc.greater_equal(lengths, self.options.min_length),
                               pc.less_equal(lengths, self.options.max_length)),
                       pc.match_substring_regex(runs, "[A-Za-z]"))
        ascii_mask = is_ascii.to_numpy(zero_copy_only=False)
        at = [np.flatnonzero(ascii_mask)[keep.to_numpy(zero_copy_only=False)]]
        found = [runs.filter(keep)]
        if self.options.pattern is not None and len(found[0]):
            matching = self._full_match(found[0].to_pylist())
            at[0], found[0] = at[0][matching], found[0].filter(pa.array(matching))
        others = np.flatnonzero(~ascii_mask)
        if len(others):
            tokens, rows = self._tokens_of_others(pieces.take(pa.array(others)).cast(pa.large_binary()).to_pylist())
            at.append(others[rows])
            found.append(pa.array(tokens, type=pa.large_string()))
        piece_of = np.concatenate(at)
        order = np.argsort(piece_of, kind="stable")  # by piece; a piece's own tokens keep their order
        per_piece = np.bincount(piece_of, minlength=len(pieces))
        tokens_array = pa.concat_arrays(found).take(pa.array(order)) if len(piece_of) else pa.array(
            [], type=pa.large_string())
        return tokens_array, np.cumsum(per_piece) - per_piece, per_piece

    def _full_match(self, tokens: list[str]) -> npt.NDArray[np.bool_]:
        import tensorflow as tf

        return tf.strings.regex_full_match(tf.constant(tokens, dtype=tf.string), self.options.pattern).numpy()

    def _tokens_of_others(self, pieces: list[bytes]) -> tuple[list[str], npt.NDArray[np.int64]]:
        """Tokens of pieces holding non-ASCII characters, by :meth:`__call__`'s ops (lowercasing what
        :meth:`prepare` left: lowercasing is idempotent), with the piece each comes from."""
        import tensorflow as tf

        text = tf.constant(pieces, dtype=tf.string)
        runs, rows, keep = self._runs(self._lower(text) if self.options.lowercase else text)
        kept = keep.numpy()
        return [t.decode("utf-8") for t in runs.numpy()[kept].tolist()], rows.numpy()[kept]


def piece_counts(spaced: bytes) -> pa.Table:
    """The distinct runs between spaces of ``spaced`` (:meth:`Tokenizer.spaced`) as ``piece``
    (``large_string``), with how often each occurs as ``n``, in order of first appearance. An
    empty piece stands for spaces at either end; every token lies inside one piece.

    Split and hashed by Arrow's compute kernels (C++) over the bytes as they are, so that no piece
    becomes a Python object: about twice as fast as ``Counter(spaced.split())``, which makes one
    of every occurrence. Arrow splits at ASCII white space, as ``bytes.split`` does; the only one
    ``spaced`` holds is the space.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    offsets = pa.py_buffer(np.array([0, len(spaced)], dtype=np.int64))
    text = pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(spaced))  # no copy, no cast
    counted = pc.value_counts(pc.list_flatten(pc.ascii_split_whitespace(text)))
    return pa.table({"piece": counted.field(0), "n": counted.field(1)})


def merged_piece_counts(parts: list[pa.Table]) -> pa.Table:
    """Tables of :func:`piece_counts` as one, each piece once, in order of first appearance."""
    import pyarrow as pa

    if len(parts) == 1:
        return parts[0]
    table = pa.concat_tables(parts)
    pieces, sums = _summed(table["piece"].combine_chunks(), table["n"].to_numpy())
    return pa.table({"piece": pieces, "n": sums})


def _summed(keys: pa.Array, counts: npt.NDArray[np.int64]) -> tuple[pa.Array, npt.NDArray[np.int64]]:
    """The distinct ``keys`` in order of first appearance, and the sum of each one's ``counts``:
    hashed once by Arrow, summed by numpy (Acero's group_by takes six times as long). Float sums
    of int64 counts are exact below 2**53."""
    import numpy as np
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(keys)
    sums = np.bincount(encoded.indices.to_numpy(), weights=counts, minlength=len(encoded.dictionary))
    return encoded.dictionary, sums.astype(np.int64)


def _check_pattern(pattern: str) -> None:
    import tensorflow as tf

    try:
        tf.strings.regex_full_match(tf.constant([""]), pattern)
    except tf.errors.InvalidArgumentError as err:
        raise ValueError(f"corpus.tokenizer.pattern is not a valid RE2 expression: {pattern!r} "
                         f"({err.message.splitlines()[0]})") from None


def _well_formed(options: TokenizerOptions) -> re.Pattern[str]:
    """Tokens the rules could give, case and ``pattern`` aside (Python's Unicode tables)."""
    middle = rf"(?:[^\W_]|[{re.escape(options.inner)}])*" if options.inner else r"[^\W_]*"
    return re.compile(rf"[^\W_](?:{middle}[^\W_])?")


def _producible_apart_from_case(options: TokenizerOptions, token: str, shape: re.Pattern[str]) -> bool:
    return (options.min_length <= len(token) <= options.max_length and shape.fullmatch(token) is not None
            and any(c.isalpha() for c in token))


def tokenizer_table_mismatch(options: TokenizerOptions, tokens: Iterable[str]) -> float | None:
    """Whether the tokenizer's casing disagrees with the table's, and what that costs.

    Only table tokens the tokenizer could give apart from case are considered: letters, digits
    and ``inner`` characters, no ``inner`` character at an end, a letter, ``min_length`` to
    ``max_length`` characters (``[CLS]``, ``##ing`` or ``3.14`` are never produced whatever the
    casing). Case is Python's ``str.lower``.

    - ``lowercase=True`` and a cased table (some such token differs from its lowercase form):
      those tokens can never be produced; returns their share of all table tokens.
    - ``lowercase=False`` and an uncased table (no such token has a capital, some have cased
      letters): every row can still be produced, so the share is ``0.0``; the cost is on the
      corpus side (``The`` at a sentence start never matches the row ``the``).

    Args:
        options: the tokenizer's options.
        tokens: the table's tokens.

    Returns:
        None when the casing agrees (or the table has no cased letters), else the share of table
        tokens the tokenizer can never produce, in [0, 1].
    """
    shape = _well_formed(options)
    total = 0
    capitalised = 0
    cased = False
    for token in tokens:
        total += 1
        lower = token.lower()
        if lower != token:
            if _producible_apart_from_case(options, token, shape):
                capitalised += 1
        elif not cased and token.upper() != token and _producible_apart_from_case(options, token, shape):
            cased = True
    if options.lowercase:
        return capitalised / total if capitalised else None
    return 0.0 if cased and not capitalised else None


def warn_tokenizer_table_mismatch(options: TokenizerOptions, tokens: Iterable[str],
                                  logger: logging.Logger | None = None) -> float | None:
    """Log a warning when :func:`tokenizer_table_mismatch` finds one; return what it returned."""
    tokens = list(tokens)
    share = tokenizer_table_mismatch(options, tokens)
    if share is None:
        return None
    logger = logger or log
    if options.lowercase:
        shape = _well_formed(options)
        examples = [t for t in tokens if t.lower() != t and _producible_apart_from_case(options, t, shape)][:3]
        logger.warning("the table is cased but corpus.tokenizer.lowercase=true: %.1f%% of its tokens (%s, ...) can "
                       "never be produced and keep their rows unused; set corpus.tokenizer.lowercase=false",
                       100 * share, ", ".join(map(repr, examples)))
    else:
        logger.warning("the table is uncased but corpus.tokenizer.lowercase=false: the tokenizer can produce every "
                       "table token (%.1f%% never produced), but capitalised corpus words (sentence starts, names) "
                       "never match their lowercase rows and may be taken for new tokens; "
                       "set corpus.tokenizer.lowercase=true", 100 * share)
    return share
