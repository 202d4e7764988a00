"""Readers of evaluation sets: scored word pairs (WordSim353, SimLex-999), related pairs, analogies."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipeline.errors import InputError


@dataclass(frozen=True)
class ScoredPairs:
    """Word pairs with a human score each, in file order.

    Attributes:
        source: the file read.
        pairs: ``(word, word)`` per pair.
        scores: the human score of each pair.
        lines: the 1-based line of each pair in ``source``.
    """

    source: str
    pairs: tuple[tuple[str, str], ...]
    scores: npt.NDArray[np.float64]
    lines: tuple[int, ...]


@dataclass(frozen=True)
class Analogies:
    """Analogy questions ``a : b :: c : expected`` grouped in sections, in file order.

    Attributes:
        source: the file read.
        sections: the section names, in file order (a section may hold no question).
        questions: ``(a, b, c, expected)`` per question.
        section_of: the index into ``sections`` of each question.
        lines: the 1-based line of each question in ``source``.
    """

    source: str
    sections: tuple[str, ...]
    questions: tuple[tuple[str, str, str, str], ...]
    section_of: npt.NDArray[np.int64]
    lines: tuple[int, ...]


def _lines(path: str | Path, what: str, hint: str) -> Iterator[tuple[int, str]]:
    """``(1-based line number, line without its line break)`` of a UTF-8 text file.

    Raises:
        InputError: the file does not exist or cannot be read, or a line is not UTF-8.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, f"{what} not found", hint=hint) from None
    except OSError as err:
        raise InputError(path, f"cannot read the {what}: {err.strerror}", hint=hint) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise InputError(path, f"not UTF-8 text: byte {data[err.start:err.start + 1]!r} at column {column}",
                         line=line, hint="save the file as UTF-8") from None
    # line breaks as a text-mode file reads them (str.splitlines would also break at \x1c, \x85, ...)
    yield from enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1)


def _tab_fields(path: str | Path, what: str, layout: str) -> Iterator[tuple[int, list[str]]]:
    """``(line number, stripped fields)`` of each line of a tab-separated file with ``layout``'s fields.

    Lines starting with ``#`` and blank lines are skipped.

    Raises:
        InputError: the file does not exist, or a line with another number of fields or an empty one.
    """
    count = layout.count("<TAB>") + 1
    for number, line in _lines(path, what, hint="check the path of the evaluation set"):
        if not line.strip() or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) != count:
            raise InputError(path, f"expected {count} tab-separated fields, got {len(fields)} in {line[:80]!r}",
                             line=number, hint=f"each line reads {layout}; comments start with #")
        if not all(fields):
            raise InputError(path, f"empty field in {line[:80]!r}", line=number, hint=f"each line reads {layout}")
        yield number, fields


def read_scored_pairs(path: str | Path) -> ScoredPairs:
    """Read a word-similarity file laid out like WordSim353 or SimLex-999.

    One pair per line: ``word<TAB>word<TAB>score``; lines starting with ``#`` and blank lines are
    skipped; the words are stripped of surrounding spaces. gensim's ``evaluate_word_pairs`` skips a
    malformed line silently; this reader refuses it, so a broken file cannot pass for a smaller set.

    Raises:
        InputError: the file does not exist, or a line without exactly three tab-separated fields,
            with an empty word, or with a score that is not a finite number (file, line and value).
    """
    layout = "word<TAB>word<TAB>score"
    pairs: list[tuple[str, str]] = []
    scores: list[float] = []
    lines: list[int] = []
    for number, (a, b, text) in _tab_fields(path, "word-similarity file", layout):
        try:
            score = float(text)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise InputError(path, f"score {text!r} is not a finite number", line=number,
                             hint=f"each line reads {layout}")
        pairs.append((a, b))
        scores.append(score)
        lines.append(number)
    return ScoredPairs(str(path), tuple(pairs), np.array(scores, dtype=np.float64), tuple(lines))


def read_pairs(path: str | Path) -> tuple[tuple[str, str], ...]:
    """Read related word pairs: ``word<TAB>word`` per line, ``#`` lines and blank lines skipped.

    Raises:
        InputError: the file does not exist, or a line without exactly two tab-separated fields or
            with an empty word (file, line and value).
    """
    return tuple((a, b) for _, (a, b) in _tab_fields(path, "pairs file", "word<TAB>word"))


def read_analogies(path: str | Path) -> Analogies:
    """Read analogy questions laid out like word2vec's ``questions-words.txt``.

    A line ``: name`` starts a section; every other non-blank line holds four words separated by
    whitespace, ``a b c expected`` for "a is to b as c is to expected". Section names are read as
    gensim reads them (``line.lstrip(": ").strip()``). gensim skips a line without four words
    silently; this reader refuses it.

    Raises:
        InputError: the file does not exist, a question comes before the first section header, or a
            line does not hold four words (file, line and value).
    """
    sections: list[str] = []
    questions: list[tuple[str, str, str, str]] = []
    section_of: list[int] = []
    lines: list[int] = []
    for number, line in _lines(path, "analogy file", hint="check the path of the evaluation set"):
        if line.startswith(": "):
            sections.append(line.lstrip(": ").strip())
            continue
        words = line.split()
        if not words:
            continue
        if len(words) != 4:
            raise InputError(path, f"expected 4 words, got {len(words)} in {line[:80]!r}", line=number,
                             hint="each question reads 'a b c expected'; a section starts with ': name'")
        if not sections:
            raise InputError(path, f"question {line[:80]!r} before the first section header", line=number,
                             hint="start the file with a line ': name'")
        questions.append((words[0], words[1], words[2], words[3]))
        section_of.append(len(sections) - 1)
        lines.append(number)
    return Analogies(str(path), tuple(sections), tuple(questions), np.array(section_of, dtype=np.int64),
                     tuple(lines))
