"""``tracking.register_as``: log an adapted table as a pyfunc model, register a version of it, find it again."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.export import write_manifest
from pipeline.formats import file_sha256, save_table
from pipeline.serving import (
    MANIFEST_ARTIFACT,
    MODEL_CODE,
    OOV_CONFIG_KEY,
    SUBWORD_ARTIFACT,
    TABLE_ARTIFACT,
    TABLE_FILE,
    TOKEN_COLUMN,
    check_oov,
)
from pipeline.subword import SubwordModel, save_subword
from pipeline.table import EmbeddingTable

MODEL_NAME = "model"  # the logged model's name in its run: runs:/<run_id>/model
MANIFEST_FILE = "manifest.json"
EXAMPLE_ROWS = 3
_BAD_NAME_CHARACTERS = ("/", ":", "%", "\\")
_MAX_NAME_LENGTH = 256
_SERVING_PACKAGES = ("mlflow", "numpy", "pandas", "scipy", "safetensors")
# the model version tags register_table sets itself
_OWN_TAGS = ("base_checksum", "adapted_checksum", "rows", "dim", "oov", "manifest_sha256", "package_version")


def check_model_name(name: str) -> str:
    """``name`` when MLflow's registry accepts it as a registered model name.

    Raises:
        ValueError: an empty or padded name, one with ``/ : % \\`` or one too long.
    """
    if (not name or name != name.strip() or any(c in name for c in _BAD_NAME_CHARACTERS)
            or len(name) > _MAX_NAME_LENGTH):
        raise ValueError(
            f"tracking.register_as must be a registered model name: not empty, no surrounding spaces, "
            f"none of {' '.join(_BAD_NAME_CHARACTERS)}, at most {_MAX_NAME_LENGTH} characters; got {name!r}"
        )
    return name


def serving_requirements() -> list[str]:
    """The pip requirements a serving environment needs, pinned to this environment's versions.

    Given explicitly so that logging does not start a subprocess to infer them.
    """
    pins = []
    for package in _SERVING_PACKAGES:
        try:
            pins.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            pins.append(package)
    return [*pins, f"embadapt=={__version__}"]


def register_table(*, uri: str, run_id: str, name: str, table: EmbeddingTable, manifest: dict[str, Any],
                   subword: SubwordModel | None, oov: str, work_dir: Path,
                   extra_tags: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Log ``table`` into run ``run_id`` as the pyfunc model ``model`` and register it as ``name``.

    The model is saved as code (:data:`pipeline.serving.MODEL_CODE`), so loading or serving it
    unpickles nothing; the default OOV policy is its ``model_config`` (``{"oov": oov}``). The table
    is written once, as safetensors, into ``work_dir/table``; MLflow copies that file into the
    model's artifacts (with the subword model, when given, and ``manifest.json``). The model's
    signature takes a ``token`` string column and returns a ``(n, dim)`` float32 tensor; its params
    schema declares ``oov`` with ``oov`` as the default. Everything goes through an
    :class:`~mlflow.MlflowClient` on ``uri``: no global tracking URI or active run is set or left.

    Args:
        uri: the tracking (and registry) URI.
        run_id: the job's run, open or finished; the model is one of its outputs.
        name: the registered model name (``tracking.register_as``).
        table: the adapted table.
        manifest: what the table came from (:func:`pipeline.export.build_manifest`).
        subword: n-gram vectors for ``oov=subword`` requests, or None.
        oov: the default OOV policy: ``error``, ``zeros`` or ``subword``.
        work_dir: a folder for the files handed to MLflow.
        extra_tags: more tags for the model version (the scheduled job's round id, say); they may
            not replace the tags this function sets.

    Returns:
        The registered model name and the new version.

    Raises:
        ValueError: a bad ``name`` or ``oov``, ``oov=subword`` without a subword model, a manifest
            whose adapted checksum is not the table's, or an extra tag that is not a string pair or
            that names a tag this function sets.
    """
    import mlflow.pyfunc
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    check_model_name(name)
    oov = check_oov(oov, "tracking.oov")
    if oov == "subword" and subword is None:
        raise ValueError("tracking.oov is 'subword' but there is no subword model to serve it")
    claimed = manifest.get("adapted", {}).get("checksum")
    if claimed is not None and claimed != table.checksum:
        raise ValueError(f"the manifest's adapted checksum {claimed} is not the table's {table.checksum}")
    extra = _check_extra_tags(extra_tags)

    table_dir = work_dir / TABLE_ARTIFACT
    save_table(table, table_dir / TABLE_FILE, "safetensors")
    manifest_path = work_dir / MANIFEST_FILE
    write_manifest(manifest_path, manifest)
    artifacts = {TABLE_ARTIFACT: str(table_dir), MANIFEST_ARTIFACT: str(manifest_path)}
    if subword is not None:
        save_subword(subword, work_dir / SUBWORD_ARTIFACT)
        artifacts[SUBWORD_ARTIFACT] = str(work_dir / SUBWORD_ARTIFACT)
    manifest_sha256 = file_sha256(manifest_path)
    tags = {
        "base_checksum": str(manifest.get("base", {}).get("checksum", "")),
        "adapted_checksum": table.checksum,
        "rows": str(len(table)),
        "dim": str(table.dim),
        "oov": oov,
        "manifest_sha256": manifest_sha256,
        "package_version": __version__,
    }

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(run_id)
    logged = client.create_logged_model(run.info.experiment_id, name=MODEL_NAME, source_run_id=run_id, tags=tags)
    staging = Path(tempfile.mkdtemp(dir=work_dir, prefix=".model-"))
    try:
        mlflow.pyfunc.save_model(
            staging / MODEL_NAME,
            python_model=str(MODEL_CODE),  # models from code: nothing pickled, nothing to unpickle
            model_config={OOV_CONFIG_KEY: oov},
            artifacts=artifacts,
            signature=_signature(table.dim, oov),
            input_example=_input_example(table),
            pip_requirements=serving_requirements(),
            metadata={"manifest_sha256": manifest_sha256, "adapted_checksum": table.checksum},
            mlflow_model=Model(artifact_path=logged.artifact_location, run_id=run_id,
                               model_id=logged.model_id, model_uuid=logged.model_id),
        )
        client.log_model_artifacts(logged.model_id, str(staging / MODEL_NAME))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)

    try:
        client.create_registered_model(name)
    except MlflowException as err:
        if err.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    # the artifact location, not models:/<id>: MLflow's sql registry resolves that through the global URI
    created = client.create_model_version(name, source=logged.artifact_location, run_id=run_id,
                                          tags={**tags, **extra}, model_id=logged.model_id)
    return name, str(created.version)


def find_version(*, uri: str, name: str, tag: str, value: str) -> str | None:
    """The version of registered model ``name`` whose tag ``tag`` is ``value``, through the registry at ``uri``.

    Args:
        uri: the registry URI (as given to :func:`register_table`).
        name: the registered model name.
        tag: a model version tag key (``round`` for the scheduled job, say).
        value: the value it must have, exactly.

    Returns:
        The version number as a string, the highest when several versions match; None when the model
        does not exist or no version of it has that tag value.

    Raises:
        ValueError: ``tag`` holds a backtick, or ``name`` or ``value`` holds both kinds of quote:
            MLflow's search filter has no way to write them.
    """
    from mlflow import MlflowClient

    filter_string = f"name = {_quoted(name, 'name')} and tags.{_backticked(tag)} = {_quoted(value, 'value')}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    found: list[int] = []
    page_token = None
    while True:
        page = client.search_model_versions(filter_string, page_token=page_token)
        # checked again here: the filter is the store's to interpret (collation, quoting)
        found += [int(v.version) for v in page if v.name == name and v.tags.get(tag) == value]
        page_token = page.token
        if not page_token:
            break
    return str(max(found)) if found else None


def _check_extra_tags(extra_tags: Mapping[str, str] | None) -> dict[str, str]:
    """``extra_tags`` as a dict once every key and value is a string and no key is one of ours.

    Raises:
        ValueError: a non-string or empty key, a non-string value, or a key :func:`register_table` sets.
    """
    extra = dict(extra_tags or {})
    for key, value in extra.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"extra_tags keys must be non-empty strings, got {key!r}")
        if not isinstance(value, str):
            raise ValueError(f"extra_tags[{key!r}] must be a string, got {value!r} ({type(value).__name__})")
        if key in _OWN_TAGS:
            raise ValueError(f"extra_tags may not set {key!r}: register_table sets it ({', '.join(_OWN_TAGS)})")
    return extra


def _quoted(text: str, what: str) -> str:
    """``text`` as a string literal of MLflow's search filter (single or double quotes, no escapes)."""
    for quote in ("'", '"'):
        if quote not in text:
            return f"{quote}{text}{quote}"
    raise ValueError(f"{what} {text!r} holds both ' and \", which an MLflow search filter cannot express")


def _backticked(key: str) -> str:
    """``key`` as a tag key of MLflow's search filter."""
    if "`" in key:
        raise ValueError(f"tag {key!r} holds a backtick, which an MLflow search filter cannot express")
    return f"`{key}`"


def _signature(dim: int, oov: str) -> Any:
    """A ``token`` string column in, a ``(n, dim)`` float32 tensor out, ``oov`` as a request param."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([ColSpec("string", TOKEN_COLUMN)]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, dim))]),
        params=ParamSchema([ParamSpec("oov", "string", oov)]),
    )


def _input_example(table: EmbeddingTable) -> Any:
    """The first few tokens of ``table`` as a one-column DataFrame."""
    import pandas as pd

    return pd.DataFrame({TOKEN_COLUMN: list(table.tokens[:EXAMPLE_ROWS])})
