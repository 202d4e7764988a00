"""Turning documents into tokens: TensorFlow string ops in tf.data pipelines, and the same rules on joined text."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

log = logging.getLogger(__name__)

_ASCII_ALNUM = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ASCII_DIGITS = b"0123456789"
_CAPITAL_SIGMA = "\u03a3".encode()


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

    For counting, the same rules apply in three steps, mostly in Python: :meth:`prepare` lowercases
    documents joined by newlines, :meth:`pieces` cuts them at ASCII separators (no per-token loop), and
    :meth:`add_pieces` turns counted pieces into counted tokens, once per distinct piece. Pieces of
    ASCII are finished there; pieces holding other characters go through :meth:`__call__` itself,
    so both ways give the same tokens.
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
        self._not_letters = _ASCII_DIGITS + self._ascii_inner

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
        """Documents joined by newlines (UTF-8), made ready for :meth:`pieces`: lowercased when the options
        say so. ASCII letters are lowercased here, in Python; the pieces holding other characters are
        lowercased by :meth:`__call__`'s op when :meth:`add_pieces` tokenizes them. Text holding a
        capital sigma is lowercased whole by that op, since its lowercase (σ or final ς) depends on
        the letters around it, across separators. A newline neither is nor carries case, so
        lowercasing the joined text equals lowercasing each document."""
        if not self.options.lowercase or text.isascii() or _CAPITAL_SIGMA not in text:
            return text.lower() if self.options.lowercase else text
        import tensorflow as tf

        return self._lower(tf.constant(text)).numpy()

    def pieces(self, text: bytes) -> list[bytes]:
        """``text`` from :meth:`prepare` cut at ASCII separators: every token lies inside one piece."""
        return text.translate(self._spaces).split()

    def add_pieces(self, pieces: Mapping[bytes, int], counts: dict[bytes, int]) -> int:
        """Add the tokens of counted ``pieces`` (from :meth:`pieces`) to ``counts`` (UTF-8 token -> count).

        Returns:
            How many tokens the pieces hold.
        """
        found: dict[bytes, int] = {}
        others: list[bytes] = []
        others_n: list[int] = []
        low, high = self.options.min_length, self.options.max_length
        inner, not_letters = self._ascii_inner, self._not_letters
        for piece, n in pieces.items():
            if piece.isalpha():  # ASCII letters only, the most common piece: a token as it stands
                if low <= len(piece) <= high:
                    found[piece] = n + found.get(piece, 0)
            elif piece.isascii():
                token = piece.strip(inner) if inner else piece
                if low <= len(token) <= high and token.translate(None, not_letters):
                    found[token] = n + found.get(token, 0)
            else:
                others.append(piece)
                others_n.append(n)
        if self.options.pattern is not None and found:
            found = self._matching(found)
        if others:
            for token, n in self._tokens_of_others(others, others_n).items():
                found[token] = n + found.get(token, 0)
        for token, n in found.items():
            counts[token] = n + counts.get(token, 0)
        return sum(found.values())

    def _matching(self, found: dict[bytes, int]) -> dict[bytes, int]:
        import tensorflow as tf

        tokens = list(found)
        keep = tf.strings.regex_full_match(tf.constant(tokens, dtype=tf.string), self.options.pattern).numpy()
        return {token: found[token] for token, ok in zip(tokens, keep.tolist(), strict=True) if ok}

    def _tokens_of_others(self, pieces: list[bytes], repeats: list[int]) -> dict[bytes, int]:
        """Tokens of pieces holding non-ASCII characters, by :meth:`__call__` (lowercasing what
        :meth:`prepare` left: lowercasing is idempotent)."""
        import tensorflow as tf

        text = tf.constant(pieces, dtype=tf.string)
        runs, rows, keep = self._runs(self._lower(text) if self.options.lowercase else text)
        found: dict[bytes, int] = {}
        for token, row, ok in zip(runs.numpy().tolist(), rows.numpy().tolist(), keep.numpy().tolist(), strict=True):
            if ok:
                found[token] = repeats[row] + found.get(token, 0)
        return found


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
