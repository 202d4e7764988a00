"""The configured evaluation sets, read once, scored on a table before and after adaptation as flat metrics."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.evaluate.analogies import AnalogyResult, word_analogies
from pipeline.evaluate.files import Analogies, ScoredPairs, read_analogies, read_pairs, read_scored_pairs
from pipeline.evaluate.lookup import GENSIM_RESTRICT_VOCAB
from pipeline.evaluate.relatedness import RelatednessResult, relatedness_auc
from pipeline.evaluate.similarity import SimilarityResult, word_similarity
from pipeline.table import EmbeddingTable

KINDS = ("similarity", "pairs", "analogies")
_UNSAFE = re.compile(r"[^0-9A-Za-z_\-. ]+")  # MLflow metric names take these (and '/', our separator)


@dataclass(frozen=True)
class EvaluateOptions:
    """What is evaluated after adaptation (``configs/evaluate/``).

    Attributes:
        similarity: word-similarity files (word, word, score; tab-separated; ``#`` comments), like
            WordSim353 and SimLex-999: Spearman's rho and the share of pairs covered.
        pairs: related-pair files (word, word): AUC of the pairs' cosine against the same first word
            with a random partner, also split into pairs that touch a new or shifted row and the rest.
        analogies: files laid out like word2vec's ``questions-words.txt``: 3CosAdd accuracy per section.
        restrict_vocab: similarity and analogies use the first N rows, as gensim's ``restrict_vocab``
            (300000 there too); null uses every row, appended ones included.
        case_insensitive: similarity and analogy words match rows by their upper-case form, as gensim.
        negatives: random partners per related pair (1 is the usual protocol; more gives a steadier AUC).
        integrity: frozen rows bit-identical and base tokens at their indices; a failed check fails the run.
        neighbours: nearest rows listed per shown token.
        show: new and shifted tokens (each) shown with their neighbours before and after.
    """

    similarity: tuple[str, ...] = ()
    pairs: tuple[str, ...] = ()
    analogies: tuple[str, ...] = ()
    restrict_vocab: int | None = GENSIM_RESTRICT_VOCAB
    case_insensitive: bool = True
    negatives: int = 1
    integrity: bool = True
    neighbours: int = 10
    show: int = 8

    def __post_init__(self) -> None:
        if self.restrict_vocab is not None and self.restrict_vocab < 1:
            raise ValueError(f"evaluate.restrict_vocab must be positive or null, got {self.restrict_vocab}")
        if self.negatives < 1:
            raise ValueError(f"evaluate.negatives must be positive, got {self.negatives}")
        if self.neighbours < 1 or self.show < 0:
            raise ValueError(f"evaluate.neighbours must be >= 1 and evaluate.show >= 0, got "
                             f"{self.neighbours} and {self.show}")
        for kind in KINDS:
            names: dict[str, str] = {}
            for path in getattr(self, kind):
                name = set_name(path)
                if name in names:
                    raise ValueError(f"evaluate.{kind} has two files named {name!r} ({names[name]} and {path}); "
                                     "their metrics would collide: rename one")
                names[name] = path


def set_name(path: str | Path) -> str:
    """The name an evaluation file's metrics carry: its file name without extension, MLflow-safe."""
    stem = Path(path).name.split(".")[0] or Path(path).name
    return _UNSAFE.sub("_", stem)


@dataclass(frozen=True)
class EvaluationSets:
    """Every configured evaluation file, read (and so checked) once; name -> contents, in config order."""

    similarity: dict[str, ScoredPairs] = field(default_factory=dict)
    pairs: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    analogies: dict[str, Analogies] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.similarity or self.pairs or self.analogies)


def read_sets(options: EvaluateOptions) -> EvaluationSets:
    """Read every configured file; call it before long work, so a bad file fails the run at once.

    Raises:
        InputError: a file that does not exist or has a malformed line (file and line named).
    """
    return EvaluationSets(
        similarity={set_name(p): read_scored_pairs(p) for p in options.similarity},
        pairs={set_name(p): read_pairs(p) for p in options.pairs},
        analogies={set_name(p): read_analogies(p) for p in options.analogies},
    )


@dataclass(frozen=True)
class Scores:
    """One table's results on every set."""

    similarity: dict[str, SimilarityResult]
    pairs: dict[str, RelatednessResult]
    analogies: dict[str, AnalogyResult]

    def metrics(self, suffix: str) -> dict[str, float]:
        """Flat ``eval/<kind>/<set>/<name>_<suffix>`` metrics; undefined figures are left out, coverage never."""
        out: dict[str, float | None] = {}
        for name, s in self.similarity.items():
            key = f"eval/similarity/{name}"
            out |= {f"{key}/rho_{suffix}": s.rho, f"{key}/pearson_{suffix}": s.pearson,
                    f"{key}/coverage_{suffix}": s.coverage}
        for name, r in self.pairs.items():
            key = f"eval/pairs/{name}"
            out |= {f"{key}/auc_{suffix}": r.auc, f"{key}/coverage_{suffix}": r.coverage,
                    f"{key}/touching_auc_{suffix}": r.touching_auc, f"{key}/touching_pairs_{suffix}": r.touching,
                    f"{key}/rest_auc_{suffix}": r.rest_auc}
        for name, a in self.analogies.items():
            key = f"eval/analogies/{name}"
            out |= {f"{key}/accuracy_{suffix}": a.accuracy, f"{key}/coverage_{suffix}": a.coverage}
            for section in a.sections:
                out[f"{key}/{_UNSAFE.sub('_', section.name)}/accuracy_{suffix}"] = section.accuracy
        return {k: float(v) for k, v in out.items() if v is not None}


def score_table(table: EmbeddingTable, sets: EvaluationSets, options: EvaluateOptions, *,
                touching: Collection[str] = (), seed: int = 0) -> Scores:
    """Every set scored on ``table``; related pairs split by whether they touch a token of ``touching``."""
    return Scores(
        similarity={name: word_similarity(table, pairs, restrict_vocab=options.restrict_vocab,
                                          case_insensitive=options.case_insensitive)
                    for name, pairs in sets.similarity.items()},
        pairs={name: relatedness_auc(table, pairs, negatives=options.negatives, seed=seed, touching=touching)
               for name, pairs in sets.pairs.items()},
        analogies={name: word_analogies(table, questions, restrict_vocab=options.restrict_vocab,
                                        case_insensitive=options.case_insensitive)
                   for name, questions in sets.analogies.items()},
    )


def before_after(before: Mapping[str, float], after: Mapping[str, float]) -> list[tuple[str, float | None,
                                                                                         float | None]]:
    """Rows ``(metric, before, after)`` for every metric either side has, suffixes dropped, in name order."""
    def strip(metrics: Mapping[str, float], suffix: str) -> dict[str, float]:
        return {k.removesuffix(suffix): v for k, v in metrics.items() if k.endswith(suffix)}

    b, a = strip(before, "_before"), strip(after, "_after")
    return [(name, b.get(name), a.get(name)) for name in sorted(b.keys() | a.keys())]
