"""The MLflow pyfunc model that serves an embedding table: tokens in, their vectors out, with an OOV policy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc.model import PythonModel, PythonModelContext

from pipeline.formats import LoadOptions, load_table
from pipeline.subword import SubwordModel, load_subword
from pipeline.table import EmbeddingTable

OOV_POLICIES = ("error", "zeros", "subword")
TOKEN_COLUMN = "token"
TABLE_ARTIFACT = "table"
SUBWORD_ARTIFACT = "subword"
MANIFEST_ARTIFACT = "manifest"
TABLE_FILE = "embedding.safetensors"
OOV_CONFIG_KEY = "oov"  # the model_config key that holds the default OOV policy
# the models-from-code file that MLflow copies into the model and runs to build it (never imported here)
MODEL_CODE = Path(__file__).with_name("serving_model.py")


def check_oov(policy: object, key: str = "oov") -> str:
    """``policy`` when it is one of :data:`OOV_POLICIES`.

    Raises:
        ValueError: any other value; the message names ``key`` and the value.
    """
    if policy not in OOV_POLICIES:
        raise ValueError(f"{key} must be one of {', '.join(OOV_POLICIES)}, got {policy!r}")
    return str(policy)


class UnknownTokenError(MlflowException):
    """A requested token is not in the table and the OOV policy is ``error``.

    An :class:`MlflowException` with ``INVALID_PARAMETER_VALUE``, so that ``mlflow models serve``
    answers HTTP 400 with this message rather than a generic one.
    """

    def __init__(self, token: str, unknown: int) -> None:
        others = f" (and {unknown - 1} more unknown)" if unknown > 1 else ""
        super().__init__(
            f"token {token!r} not in table{others}; pass params={{'oov': 'zeros'}} or 'subword' to allow it",
            error_code=INVALID_PARAMETER_VALUE,
        )
        self.token = token


class EmbeddingModel(PythonModel):
    """Maps tokens to their rows of an embedding table.

    Lookups are exact: no case folding or normalisation (``"Cat"`` and ``"cat"`` are different
    tokens, as they are in the table). A token that is not in the table follows the OOV policy:

    - ``error``: raise :class:`UnknownTokenError` naming the first unknown token;
    - ``zeros``: a zero vector;
    - ``subword``: the mean of its known character n-gram vectors (zeros when none is known).

    Args:
        oov: the default policy when the model has no ``model_config``; a registered model takes it
            from ``model_config={"oov": ...}`` (see :meth:`load_context`), and a request overrides
            it with ``params={"oov": ...}``.

    The registered model is saved as code (:data:`MODEL_CODE`), not pickled: MLflow runs that file
    to build the model, and :meth:`load_context` reads the default policy from the model's config
    and the table and the subword model from its artifacts.
    """

    def __init__(self, oov: str = "error") -> None:
        self.oov = check_oov(oov)
        self._table: EmbeddingTable | None = None
        self._subword: SubwordModel | None = None

    # Registration no longer pickles the model; these keep a pickle to the policy alone (never the
    # table) and let versions registered before models from code, whose python_model.pkl holds
    # this state, still load where pickles are allowed.
    def __getstate__(self) -> dict[str, Any]:
        return {"oov": self.oov}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.oov = check_oov(state["oov"])
        self._table = None
        self._subword = None

    def load_context(self, context: PythonModelContext) -> None:
        """Read the default policy from the model's config, the table (and subword model) from its artifacts.

        The default policy is ``model_config["oov"]`` when the config has one, else the
        constructor's. Registration sets the same value as the default of the signature's ``oov``
        param, which MLflow's pyfunc wrapper passes with every request that omits it: a load-time
        ``model_config`` override changes what direct calls and the ``subword`` check below use,
        not what ``PyFuncModel.predict`` or the REST server answer.

        Raises:
            ValueError: a config ``oov`` that is not a policy, or the default policy is ``subword``
                but the model has no subword artifact.
        """
        config = context.model_config or {}
        if OOV_CONFIG_KEY in config:
            self.oov = check_oov(config[OOV_CONFIG_KEY], f"model_config.{OOV_CONFIG_KEY}")
        artifacts = context.artifacts
        self._table = load_table(Path(artifacts[TABLE_ARTIFACT]) / TABLE_FILE,
                                 LoadOptions(format="safetensors", cache=False, progress=False))
        self._subword = load_subword(Path(artifacts[SUBWORD_ARTIFACT])) if SUBWORD_ARTIFACT in artifacts else None
        if self.oov == "subword" and self._subword is None:
            raise ValueError("oov policy is 'subword' but the model was saved without a subword model")

    # MLflow reads this hint: pd.DataFrame is one it neither converts to nor infers a schema from (the
    # logged signature is the schema), and what its schema enforcement hands over. Called directly,
    # predict also takes a Series or a list of strings.
    def predict(self, context: PythonModelContext | None, model_input: pd.DataFrame,
                params: Mapping[str, Any] | None = None) -> npt.NDArray[np.float32]:
        """The vectors of the requested tokens, one row per token in request order.

        Args:
            context: MLflow's context (unused; the artifacts were read by :meth:`load_context`).
            model_input: a DataFrame with a ``token`` column, a Series, or a list of strings.
            params: ``{"oov": "error" | "zeros" | "subword"}`` overrides the model's default policy.

        Returns:
            A ``(n, dim)`` float32 array. Over REST it reads ``{"predictions": [[...], ...]}``, one
            list per token in request order, float32 values exactly; a DataFrame would go out as
            records with one JSON key per dimension.

        Raises:
            UnknownTokenError: an unknown token under the ``error`` policy.
            MlflowException: a bad input or ``oov`` value (``INVALID_PARAMETER_VALUE``: HTTP 400).
        """
        if self._table is None:
            raise RuntimeError("EmbeddingModel.predict before load_context")
        try:
            policy = check_oov((params or {}).get("oov") or self.oov, "params.oov")
        except ValueError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
        tokens = _tokens_of(model_input)
        return self.lookup(tokens, policy)

    def lookup(self, tokens: list[str], policy: str) -> npt.NDArray[np.float32]:
        """The rows of ``tokens`` under OOV ``policy`` (see the class)."""
        table = self._table
        if table is None:
            raise RuntimeError("EmbeddingModel.lookup before load_context")
        rows = table.indices(tokens)
        missing = np.flatnonzero(rows < 0)
        if not len(missing):
            return table.matrix[rows]  # one gather, a new writable array
        if policy == "error":
            raise UnknownTokenError(tokens[int(missing[0])], len(missing))
        out = np.zeros((len(tokens), table.dim), dtype=np.float32)
        known = np.flatnonzero(rows >= 0)
        out[known] = table.matrix[rows[known]]
        if policy == "subword":
            if self._subword is None:
                raise MlflowException("params.oov is 'subword' but the model was saved without a subword model",
                                      error_code=INVALID_PARAMETER_VALUE)
            vectors, _ = self._subword.predict([tokens[i] for i in missing])
            out[missing] = vectors
        return out


def _tokens_of(model_input: Any) -> list[str]:
    """The tokens of a request: a DataFrame's ``token`` column, a Series, an array or a list of strings."""
    values: Iterable[Any]
    if isinstance(model_input, pd.DataFrame):
        if TOKEN_COLUMN not in model_input.columns:
            raise MlflowException(f"input needs a {TOKEN_COLUMN!r} column, got columns {list(model_input.columns)}",
                                  error_code=INVALID_PARAMETER_VALUE)
        values = model_input[TOKEN_COLUMN]
    elif isinstance(model_input, pd.Series | np.ndarray | list | tuple):
        values = model_input
    else:
        raise MlflowException(f"input must be a DataFrame with a {TOKEN_COLUMN!r} column or a list of strings, "
                              f"got {type(model_input).__name__}", error_code=INVALID_PARAMETER_VALUE)
    tokens = list(values)
    for i, token in enumerate(tokens):
        if not isinstance(token, str):
            raise MlflowException(f"token {i} is {token!r} ({type(token).__name__}), not a string",
                                  error_code=INVALID_PARAMETER_VALUE)
    return tokens
