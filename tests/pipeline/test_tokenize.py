"""The tokenizer's options (pattern, inner characters, NUL) and its casing check against a table."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.tokenize import Tokenizer, TokenizerOptions, tokenizer_table_mismatch, warn_tokenizer_table_mismatch

REPO_ROOT = Path(__file__).resolve().parents[2]
TEXT = "Use os.path.join, see v1.2 and 3.11 (e.g. ...done...) x86_64 read-only don't ÜBER"


def test_default_inner_splits_at_dots() -> None:
    assert Tokenizer().tokenize(TEXT) == ["use", "os", "path", "join", "see", "v1", "and", "e", "g", "done",
                                          "x86_64", "read-only", "don't", "über"]


def test_dot_as_inner_character_keeps_dotted_names_whole() -> None:
    tokenizer = Tokenizer(TokenizerOptions(inner="_-'."))
    assert tokenizer.tokenize(TEXT) == ["use", "os.path.join", "see", "v1.2", "and", "e.g", "done", "x86_64",
                                        "read-only", "don't", "über"]
    # no inner character at all: every punctuation mark separates
    assert Tokenizer(TokenizerOptions(inner="")).tokenize("__init__ read-only don't") == [
        "init", "read", "only", "don", "t"]


def test_pattern_keeps_only_tokens_it_matches_whole() -> None:
    tokenizer = Tokenizer(TokenizerOptions(pattern="[a-z][a-z0-9_]*"))
    assert tokenizer.tokenize(TEXT) == ["use", "os", "path", "join", "see", "v1", "and", "e", "g", "done", "x86_64"]
    # RE2 syntax, matched after lowercasing: a Unicode class
    assert Tokenizer(TokenizerOptions(pattern=r"\p{Greek}+")).tokenize("Λόγος and ΛΟΓΟΣ") == ["λόγος", "λογος"]
    cased = Tokenizer(TokenizerOptions(lowercase=False, pattern="[A-Z]+"))
    assert cased.tokenize("NASA and Nasa, CPU") == ["NASA", "CPU"]


def test_bad_pattern_fails_when_the_tokenizer_is_built() -> None:
    options = TokenizerOptions(pattern="(unclosed")  # options stay free of TensorFlow
    with pytest.raises(ValueError, match=r"corpus.tokenizer.pattern is not a valid RE2 expression: '\(unclosed'"):
        Tokenizer(options)
    with pytest.raises(ValueError, match="corpus.tokenizer.pattern must be a regular expression or null, got ''"):
        TokenizerOptions(pattern="")
    with pytest.raises(ValueError, match=r"corpus.tokenizer.inner takes punctuation only, got '_a'"):
        TokenizerOptions(inner="_a")


def test_nul_separates_tokens_instead_of_ending_the_document() -> None:
    # ICU's lowercasing stops at NUL; the tokenizer turns NUL into a space first
    assert Tokenizer().tokenize("abc\x00DEF ghi") == ["abc", "def", "ghi"]
    assert Tokenizer(TokenizerOptions(lowercase=False)).tokenize("abc\x00DEF ghi") == ["abc", "DEF", "ghi"]


def test_options_and_the_casing_check_do_not_import_tensorflow() -> None:
    code = ("import sys; from pipeline.tokenize import TokenizerOptions, tokenizer_table_mismatch as m; "
            "o = TokenizerOptions(pattern='[a-z]+', inner=\"_-'.\"); assert m(o, ['Paris', 'the']) == 0.5; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


TABLE = ["the", "Paris", "[CLS]", "##ing", "NASA", "x86", "3.14", "Über"]  # 3 capitalised words of 8 tokens


def test_lowercasing_tokenizer_against_a_cased_table() -> None:
    # Paris, NASA and Über can never be produced; [CLS], ##ing and 3.14 never could, whatever the case
    assert tokenizer_table_mismatch(TokenizerOptions(), TABLE) == pytest.approx(3 / 8)
    # Paris (5 characters) is too long to be a token anyway: only NASA and Über count
    assert tokenizer_table_mismatch(TokenizerOptions(max_length=4), TABLE) == pytest.approx(2 / 8)
    # casing agrees
    assert tokenizer_table_mismatch(TokenizerOptions(lowercase=False), TABLE) is None
    assert tokenizer_table_mismatch(TokenizerOptions(), ["the", "über", "[CLS]", "[SEP]"]) is None


def test_cased_tokenizer_against_an_uncased_table() -> None:
    uncased = ["the", "paris", "über", "[CLS]", "[UNK]"]  # BERT-uncased style: special tokens keep capitals
    assert tokenizer_table_mismatch(TokenizerOptions(lowercase=False), uncased) == 0.0
    assert tokenizer_table_mismatch(TokenizerOptions(), uncased) is None
    # a table with no cased letter at all agrees with either casing
    caseless = ["東京", "3.14", "日本"]
    assert tokenizer_table_mismatch(TokenizerOptions(lowercase=False), caseless) is None
    assert tokenizer_table_mismatch(TokenizerOptions(), caseless) is None


def test_mismatch_warning_names_the_share_and_examples(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pipeline.tokenize"):
        assert warn_tokenizer_table_mismatch(TokenizerOptions(), TABLE) == pytest.approx(3 / 8)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "the table is cased but corpus.tokenizer.lowercase=true: 37.5% of its tokens" in message
    assert "'Paris', 'NASA', 'Über'" in message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.tokenize"):
        assert warn_tokenizer_table_mismatch(TokenizerOptions(lowercase=False), ["the", "cat"]) == 0.0
    assert "the table is uncased but corpus.tokenizer.lowercase=false" in caplog.records[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pipeline.tokenize"):
        assert warn_tokenizer_table_mismatch(TokenizerOptions(), ["the", "cat"]) is None
    assert caplog.records == []
