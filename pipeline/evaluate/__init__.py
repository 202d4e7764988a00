"""Evaluators of an embedding table: word similarity, relatedness AUC and analogies, and their file readers."""

from pipeline.evaluate.analogies import AnalogyResult, SectionScore, top_rows, word_analogies
from pipeline.evaluate.files import Analogies, ScoredPairs, read_analogies, read_pairs, read_scored_pairs
from pipeline.evaluate.lookup import GENSIM_RESTRICT_VOCAB
from pipeline.evaluate.relatedness import RelatednessResult, pair_wins, relatedness_auc
from pipeline.evaluate.similarity import SimilarityResult, cosines, word_similarity

__all__ = [
    "GENSIM_RESTRICT_VOCAB",
    "Analogies",
    "AnalogyResult",
    "RelatednessResult",
    "ScoredPairs",
    "SectionScore",
    "SimilarityResult",
    "cosines",
    "pair_wins",
    "read_analogies",
    "read_pairs",
    "read_scored_pairs",
    "relatedness_auc",
    "top_rows",
    "word_analogies",
    "word_similarity",
]
