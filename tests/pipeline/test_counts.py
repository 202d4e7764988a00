"""Counting tokens: the fast path (joined bytes, counted by Arrow) gives exactly what the Tokenizer gives."""

from __future__ import annotations

import dataclasses
import gzip
import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import pipeline.counts as counts_module
import pipeline.tokenize as tokenize_module
from pipeline.corpus import files_corpus
from pipeline.counts import count_tokens, count_tokens_tf, token_ids, token_ids_tf
from pipeline.table import EmbeddingTable
from pipeline.tokenize import Tokenizer, TokenizerOptions, merged_piece_counts, piece_counts

# Fragments that stress every rule: case (final sigma, dotted I, titlecase, sharp s), inner characters
# at the ends and inside, digits only, Unicode digits and numbers (Nd, No, Nl), combining marks (not
# letters: they separate), scripts without case, non-ASCII punctuation, NUL and other control
# characters, overlong tokens, and characters newer than Python's Unicode tables (U+11F04, Kawi).
FRAGMENTS = [
    "Hello", "WORLD", "os.path", "don't", "'quoted'", "__init__", "read-only", "--flag", "-", "'", "_", "...",
    "3.11", "2024", "1_000", "3-4", "x86_64", "v1.2", "e.g.", "über", "ÜBER", "Straße", "STRASSE", "naïve", "ΟΔΟΣ",
    "ΟΔΟΣ's",
    "Σ", "İstanbul", "ǅemal", "Привет", "東京", "हिन्दी", "٣٤٥", "x²", "Ⅻ", "ＡＢＣ", "🙂", "café’s", "’",
    "\u00a0", "\x00", "\t", "\r", "\x7f", "a" * 41, "b" * 40, "é" * 41, "ü" * 40, "x-" * 30, "\U00011f04",
    "ⰿ", "Ⱟ", "a\u0301b", "ﬁne", "ＩＤ", "\ufffd",
]
SEPARATORS = [" ", " ", " ", ", ", ".", "-", "'", "", "\t", "’", "_"]


def varied_text(lines: int, seed: int) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(FRAGMENTS) + rng.choice(SEPARATORS) for _ in range(rng.randint(0, 12))]
        out.append("".join(words))
    return "\n".join(out) + "\n"


OPTIONS = [
    TokenizerOptions(),
    TokenizerOptions(lowercase=False),
    TokenizerOptions(inner="_-'."),
    TokenizerOptions(inner=""),
    TokenizerOptions(inner="’'"),
    TokenizerOptions(min_length=3, max_length=6),
    TokenizerOptions(pattern="[a-zß]+"),
    TokenizerOptions(lowercase=False, inner="_.", pattern=r"\pL[\pL\pN_.]*", max_length=40),
]


@pytest.mark.parametrize("options", OPTIONS, ids=repr)
def test_fast_count_equals_tokenizer_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           options: TokenizerOptions) -> None:
    lines = varied_text(400, seed=7).split("\n")[:-1]
    path = tmp_path / "varied.jsonl"  # JSON Lines: documents may hold NUL, which text files may not
    path.write_text("".join(json.dumps({"text": line}) + "\n" for line in lines), encoding="utf-8")
    corpus = files_corpus([str(path)], field="text")
    tokenizer = Tokenizer(options)
    reference = count_tokens_tf(corpus, tokenizer, progress=False)
    # small batches and a low piece limit: many batches, piece counts merged many times
    monkeypatch.setattr(counts_module, "COUNT_BATCH_DOCUMENTS", 7)
    monkeypatch.setattr(counts_module, "COUNT_MAX_PIECES", 20)
    monkeypatch.setattr(tokenize_module, "PIECES_AT_ONCE", 7)  # pieces made tokens a few at a time
    fast = count_tokens(corpus, tokenizer, progress=False)
    assert fast.counts == reference.counts
    assert fast.total == reference.total == sum(reference.counts.values())
    assert fast.documents == reference.documents == 400
    # and both equal the tokenizer applied line by line
    direct: Counter[str] = Counter()
    batch = tokenizer(tf.constant(lines))
    for row in batch.to_list():
        direct.update(token.decode("utf-8") for token in row)
    assert fast.counts == dict(direct)


@pytest.mark.parametrize("block_bytes", [5, 1 << 20])
def test_count_of_plain_text_in_blocks_equals_line_by_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          block_bytes: int) -> None:
    text = varied_text(300, seed=11).replace("\x00", "\x01")  # text files may not hold NUL
    path = tmp_path / "varied.txt"
    path.write_bytes(text.encode("utf-8") + b"caf\xc3 \xff\xfeend\r\nlast \xe2\x82")  # bad bytes, no final newline
    corpus = files_corpus([str(path)])
    assert corpus.make_blocks is not None
    tokenizer = Tokenizer()
    reference = count_tokens_tf(corpus, tokenizer, progress=False)
    lines = count_tokens(dataclasses.replace(corpus, make_blocks=None), tokenizer, progress=False)
    monkeypatch.setattr(counts_module, "COUNT_BLOCK_BYTES", block_bytes)
    blocks = count_tokens(corpus, tokenizer, progress=False)
    assert blocks == lines
    assert list(blocks.counts) == list(lines.counts)  # counted on threads, merged in the order read
    assert blocks.counts == reference.counts and blocks.total == reference.total
    assert blocks.documents == reference.documents == 302
    assert blocks.replaced == text.count("\ufffd") + 4


def test_count_sees_unicode_rules() -> None:
    """A few cases written out, so that a shared mistake of both paths would still show."""
    tokenizer = Tokenizer()
    text = "ΟΔΟΣ ΟΔΟΣ's x86_64 3.11 'über' İ \x00Zebra a\u0301b --zebra-- 'x86_64\n"
    counts = tokenizer.tokens_of_pieces(piece_counts(tokenizer.spaced(tokenizer.prepare(text.encode()))))
    assert counts == {"οδος": 1, "οδοσ's": 1, "x86_64": 2, "über": 1, "i": 1, "zebra": 2, "a": 1, "b": 1}


def test_piece_counts_merge_in_order_of_first_appearance() -> None:
    """Arrow's split and count equal ``Counter(text.split())``, and merging sums each piece once."""
    first, second = b"  b a b c  a\n", b"d a\ne c d"
    parts = [piece_counts(first), piece_counts(second)]
    assert [dict(zip(part["piece"].to_pylist(), part["n"].to_pylist(), strict=True)) for part in parts] == [
        {"": 2, "b": 2, "a": 2, "c": 1}, {"d": 2, "a": 1, "e": 1, "c": 1}]  # "": before and after the text
    merged = merged_piece_counts(parts)
    assert merged["piece"].to_pylist() == ["", "b", "a", "c", "d", "e"]
    assert merged["n"].to_pylist() == [2, 2, 3, 2, 2, 1]
    assert Counter((first + b" " + second).split()) == {
        p.encode(): n for p, n in zip(merged["piece"].to_pylist(), merged["n"].to_pylist(), strict=True) if p}


@pytest.mark.parametrize("text", [
    "ÜBER Straße İSTANBUL ǅEMAL ＡＢＣ",  # no capital sigma: ASCII lowercased in Python, the rest by the op
    "ΑΣ.ΒΑΣ ΑΣ:Β ΟΔΟΣ-ΟΔΟΣ x.ΣΑ",  # a capital sigma: its case depends on letters across separators
])
def test_prepared_pieces_give_the_tokenizers_tokens(text: str) -> None:
    tokenizer = Tokenizer()
    prepared = tokenizer.prepare(text.encode())
    assert (prepared == text.encode().lower()) == ("\u03a3" not in text)
    counts = tokenizer.tokens_of_pieces(piece_counts(tokenizer.spaced(prepared)))
    assert counts == dict(Counter(tokenizer.tokenize(text)))


def test_empty_and_blank_corpus(tmp_path: Path) -> None:
    path = tmp_path / "blank.txt"
    path.write_text("\n  \n... 3.14 --\n", encoding="utf-8")
    counts = count_tokens(files_corpus([str(path)]), Tokenizer(), progress=False)
    assert counts.counts == {} and counts.total == 0 and counts.documents == 3


@pytest.mark.parametrize("options", OPTIONS, ids=repr)
@pytest.mark.parametrize("block_bytes", [5, 1 << 20])
def test_token_ids_of_blocks_equal_the_tokenizers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  options: TokenizerOptions, block_bytes: int) -> None:
    """Every id and document of token_ids equals the TensorFlow tokenizer's (token_ids_tf), whether the
    file is read in blocks of lines or a document at a time."""
    text = varied_text(300, seed=5).replace("\x00", "\x01") + "\n\nlast line without a newline ΟΔΟΣ"
    path = tmp_path / "varied.txt"
    path.write_bytes(text.encode("utf-8") + b" caf\xc3 \xff")
    corpus = files_corpus([str(path)])
    assert corpus.make_blocks is not None
    tokenizer = Tokenizer(options)
    reference = count_tokens_tf(corpus, tokenizer, progress=False).counts
    rows = sorted(reference)[::2]
    table = EmbeddingTable(rows, np.zeros((len(rows), 2), dtype=np.float32))
    targets = sorted(reference)[1::3]

    monkeypatch.setattr(counts_module, "COUNT_BLOCK_BYTES", block_bytes)
    fast = flat_ids(token_ids(corpus, tokenizer, [table, targets]))
    slow = flat_ids(token_ids_tf(corpus, tokenizer, [table, targets]))
    by_document = flat_ids(token_ids(dataclasses.replace(corpus, make_blocks=None), tokenizer, [table, targets]))
    assert fast == slow == by_document
    assert fast[2] == 303
    assert len(fast[1]) == sum(reference.values())  # every token has a place
    assert max(fast[0][0]) >= 0 and max(fast[0][1]) >= 0 and min(fast[0][0]) == -1


@pytest.mark.parametrize("files", [
    [b"alpha beta\ngamma", b"beta\n\ndelta"],  # the first file without a final newline
    [b"alpha beta\r\ngamma\r\n\r\nbeta\r\n"],  # CRLF
    [b"\n"],  # a single empty line
    [b"", b"alpha\n"],  # an empty file first
])
def test_token_ids_of_files_and_line_ends(tmp_path: Path, files: list[bytes]) -> None:
    paths = []
    for i, content in enumerate(files):
        paths.append(tmp_path / f"{i}.txt")
        paths[-1].write_bytes(content)
    corpus = files_corpus([str(p) for p in paths])
    vocabulary = ["beta", "alpha", "delta", "gamma"]

    fast, slow = flat_ids(token_ids(corpus, Tokenizer(), [vocabulary])), flat_ids(
        token_ids_tf(corpus, Tokenizer(), [vocabulary]))
    assert fast == slow
    assert fast[2] == count_tokens(corpus, Tokenizer(), progress=False).documents


def flat_ids(batches: Iterator[tuple[list[np.ndarray], np.ndarray, int]]) -> tuple[list[list[int]], list[int], int]:
    """The ids in each vocabulary, the documents and the document count of a token_ids stream, its
    batches put end to end."""
    ids: list[list[int]] = []
    documents: list[int] = []
    first = 0
    for found, document, n in batches:
        ids = ids or [[] for _ in found]
        for column, part in zip(ids, found, strict=True):
            column += part.tolist()
        documents += (document + first).tolist()
        first += n
    return ids, documents, first


@pytest.mark.parametrize("kind", ["file", "jsonl", "gzip"])
def test_token_ids_of_documents_with_newlines_inside(tmp_path: Path, kind: str) -> None:
    # a document spanning lines (a whole file, a JSON field) keeps its tokens and its number: a newline
    # inside it only separates tokens; a compressed file (a document a line) takes the same route
    texts = ["alpha beta\ngamma\n\ndelta", "", "beta\r\nalpha\n", "gamma délta\n\nbeta caf\u00e9", "\n\n",
             "delta\rgamma"]
    if kind == "jsonl":
        paths = [tmp_path / "docs.jsonl"]
        paths[0].write_text("".join(json.dumps({"text": text}) + "\n" for text in texts), encoding="utf-8")
        corpus = files_corpus([str(paths[0])], field="text")
    elif kind == "gzip":
        paths = [tmp_path / "lines.txt.gz"]
        with gzip.open(paths[0], "wt", encoding="utf-8") as f:
            f.write("\n".join(texts))
        corpus = files_corpus([str(paths[0])])
    else:
        paths = [tmp_path / f"{i}.txt" for i in range(len(texts))]
        for path, text in zip(paths, texts, strict=True):
            path.write_text(text, encoding="utf-8")
        corpus = files_corpus([str(p) for p in paths], unit="file")
    assert corpus.make_blocks is None
    vocabulary = ["beta", "alpha", "delta", "gamma", "café"]
    arrow, reference = flat_ids(token_ids(corpus, Tokenizer(), [vocabulary])), flat_ids(
        token_ids_tf(corpus, Tokenizer(), [vocabulary]))
    assert arrow == reference
    assert arrow[2] == count_tokens(corpus, Tokenizer(), progress=False).documents
    if kind != "gzip":
        assert arrow[2] == 6 and arrow[0][0][:4] == [1, 0, 3, 2] and arrow[1][:4] == [0, 0, 0, 0]
        assert arrow[0][0][-2:] == [2, 3] and arrow[1][-2:] == [5, 5]  # after a document of newlines only
