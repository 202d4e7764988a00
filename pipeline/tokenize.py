"""Turning documents into tokens, as TensorFlow string ops that run inside tf.data pipelines."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf


@dataclass(frozen=True)
class TokenizerOptions:
    """How documents become tokens.

    A token is a run of letters, digits and the ``inner`` characters, with ``inner`` characters
    stripped from its ends; it must hold a letter and have ``min_length`` to ``max_length``
    characters. With ``inner="_-'"``, ``os_path``, ``read-only`` and ``don't`` stay whole.

    Attributes:
        lowercase: lowercase before splitting (match an uncased table such as MiniLM's).
        inner: characters kept inside tokens.
        min_length: shortest token, in characters.
        max_length: longest token, in characters.
    """

    lowercase: bool = True
    inner: str = "_-'"
    min_length: int = 1
    max_length: int = 40

    def __post_init__(self) -> None:
        if self.min_length < 1:
            raise ValueError(f"corpus.tokenizer.min_length must be at least 1, got {self.min_length}")
        if self.max_length < self.min_length:
            raise ValueError(f"corpus.tokenizer.max_length must be >= min_length ({self.min_length}), "
                             f"got {self.max_length}")
        if re.search(r"[^\W_]|\s", self.inner):
            raise ValueError(f"corpus.tokenizer.inner takes punctuation only, got {self.inner!r}")


class Tokenizer:
    """Callable on a batch of documents (``tf.string``, shape ``[n]``); returns a ``RaggedTensor`` of tokens."""

    def __init__(self, options: TokenizerOptions | None = None) -> None:
        self.options = options or TokenizerOptions()
        inner = re.escape(self.options.inner)
        self._separators = rf"[^\pL\pN{inner}]+"
        self._edges = rf"^[{inner}]+|[{inner}]+$" if inner else ""

    def __call__(self, documents: tf.Tensor) -> tf.RaggedTensor:
        import tensorflow as tf  # here, not at the top: validating options must not pay TensorFlow's import

        text = tf.strings.lower(documents, encoding="utf-8") if self.options.lowercase else documents
        text = tf.strings.regex_replace(text, self._separators, " ")
        tokens = tf.strings.split(text)
        if self._edges:
            tokens = tf.ragged.map_flat_values(tf.strings.regex_replace, tokens, self._edges, "")
        lengths = tf.ragged.map_flat_values(tf.strings.length, tokens, unit="UTF8_CHAR")
        has_letter = tf.ragged.map_flat_values(tf.strings.regex_full_match, tokens, r".*\pL.*")
        keep = has_letter & (lengths >= self.options.min_length) & (lengths <= self.options.max_length)
        return tf.ragged.boolean_mask(tokens, keep)

    def tokenize(self, text: str) -> list[str]:
        """Tokens of one string (for tests and interactive use)."""
        import tensorflow as tf

        return [t.decode("utf-8") for t in self(tf.constant([text]))[0].numpy()]
