"""MLflow tracking for a job: one run, flattened redacted params, stage metrics, artifacts, FAILED on error."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import sqlite3
import ssl
import subprocess
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import OmegaConf

from pipeline.errors import InputError

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

REDACTED = "***"
_SECRET_KEY = re.compile(r"password|passwd|secret|credential|api_?key|token(?![a-z])", re.IGNORECASE)
_NOT_SECRET = frozenset({"token_filter"})  # our own options that merely name tokens of text
_USERINFO = re.compile(r"(?<=://)([^/@:\s]+):([^/@\s]+)@")
_PARAMS_PER_BATCH = 100
_MIN_SECRET_LENGTH = 4
PARENT_RUN_ENV = "EMBADAPT_SWEEP_PARENT_RUN_ID"  # set for a sweep's jobs by tasks.callbacks.SweepParentRun
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's nested-run convention: the UI groups children under it


def is_secret_key(key: str) -> bool:
    """Whether a config or environment key names a secret.

    Keys containing ``password``, ``secret``, ``credential``, ``api_key`` or the word ``token``
    (``MLFLOW_TRACKING_TOKEN``, ``hf_token``, ``API_TOKEN_V2``) are secret; ``tokenizer`` and our own
    ``embedding.token_filter`` (tokens of text, not credentials) are not.
    """
    last = key.split(".")[-1]
    return last.lower() not in _NOT_SECRET and bool(_SECRET_KEY.search(last))


def _secret_env_values() -> list[str]:
    return sorted(
        (v for k, v in os.environ.items() if is_secret_key(k) and len(v) >= _MIN_SECRET_LENGTH),
        key=len,
        reverse=True,
    )


def redact_value(value: str, secrets: list[str] | None = None) -> str:
    """``value`` with secret environment values and URL passwords replaced by ``***``."""
    for secret in _secret_env_values() if secrets is None else secrets:
        value = value.replace(secret, REDACTED)
    return _USERINFO.sub(rf"\1:{REDACTED}@", value)


def redact(tree: Any, secrets: list[str] | None = None, key: str = "") -> Any:
    """A copy of a nested dict/list config with secret keys' values and secret values redacted."""
    secrets = _secret_env_values() if secrets is None else secrets
    if isinstance(tree, Mapping):
        return {k: REDACTED if is_secret_key(str(k)) else redact(v, secrets, str(k)) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [redact(v, secrets, key) for v in tree]
    if isinstance(tree, str):
        return redact_value(tree, secrets)
    return tree


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``; lists stay whole, as their JSON."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list | tuple) else str(value)
    return flat


def check_reachable(uri: str, timeout: float, experiment: str = "Default") -> None:
    """Fail fast, before heavy work, when the tracking store cannot be used.

    For a server, one request to its REST API (``experiments/get-by-name``) must be answered within
    ``timeout`` seconds and not with a server error. Credentials in the URI, ``MLFLOW_TRACKING_USERNAME``
    and ``_PASSWORD`` or ``MLFLOW_TRACKING_TOKEN``, and MLflow's TLS settings are honoured.

    Raises:
        InputError: a server that does not answer in time or answers 5xx, or a sqlite store whose
            folder does not exist.
    """
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("http", "https"):
        bare = parsed._replace(netloc=parsed.netloc.rpartition("@")[2]).geturl()  # credentials go in a header
        query = urllib.parse.urlencode({"experiment_name": experiment})
        request = urllib.request.Request(f"{bare.rstrip('/')}/api/2.0/mlflow/experiments/get-by-name?{query}")
        user = urllib.parse.unquote(parsed.username or os.environ.get("MLFLOW_TRACKING_USERNAME", ""))
        password = urllib.parse.unquote(parsed.password or os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
        if user:
            request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
            request.add_header("Authorization", f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}")
        context = None
        if parsed.scheme == "https":
            context = ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None)
            if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        started = time.monotonic()
        try:
            urllib.request.urlopen(request, timeout=timeout, context=context).close()  # noqa: S310
        except urllib.error.HTTPError as err:
            if err.code < 500:
                return  # it answered (404: no such experiment yet; 401/403 are MLflow's own errors to give)
            reason: object = f"HTTP {err.code} {err.reason}"
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
        else:
            return
        waited = time.monotonic() - started
        raise InputError(
            "tracking.uri", f"{redact_value(uri)} did not answer ({reason}, after {waited:.1f}s)",
            hint="start the server (mlflow server), fix tracking.uri, or run with tracking=disabled",
        )
    elif parsed.scheme == "sqlite":
        path = uri[len("sqlite:///"):]
        if path and path != ":memory:":
            folder = Path(path).expanduser().resolve().parent
            if not folder.is_dir():
                raise InputError("tracking.uri", f"{uri}: folder {folder} does not exist",
                                 hint="create it or point tracking.uri elsewhere")
            try:
                sqlite3.connect(path).close()
            except sqlite3.Error as err:
                raise InputError("tracking.uri", f"{uri}: cannot open the database ({err})") from None


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_tags(root: Path) -> dict[str, str]:
    """``git_commit`` and ``git_dirty`` when ``root`` is itself the top of a git checkout, else nothing.

    (An installed package inside some other project's checkout must not report that project's commit.)
    """
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root.resolve():
        return {}
    commit = _git(root, "rev-parse", "HEAD")
    if not commit:
        return {}
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "mlflow.source.git.commit": commit, "git_dirty": str(bool(dirty)).lower()}


class NullTracker:
    """``tracking=disabled``: every call is accepted and nothing is recorded."""

    run_id: str | None = None
    uri: str | None = None

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Record nothing."""

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Record nothing."""

    def log_artifacts(self, directory: Path, artifact_path: str | None = None) -> None:
        """Record nothing."""

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Record nothing."""

    def log_table(self, columns: Mapping[str, list[Any]], artifact_file: str) -> None:
        """Record nothing."""


class MlflowTracker(NullTracker):
    """One MLflow run, driven through ``MlflowClient`` (no global active-run state)."""

    def __init__(self, uri: str, run_id: str) -> None:
        from mlflow import MlflowClient

        self.uri = uri
        self.run_id = self._id = run_id
        self.client = MlflowClient(tracking_uri=uri)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics named ``stage/name``."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        for start in range(0, len(items), 1000):
            self.client.log_batch(self._id, metrics=items[start : start + 1000])

    def log_params(self, params: Mapping[str, str]) -> None:
        """Log params in batches within MLflow's count, key and value limits."""
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH

        items = [Param(k[:MAX_ENTITY_KEY_LENGTH], v[:MAX_PARAM_VAL_LENGTH]) for k, v in params.items()]
        for start in range(0, len(items), _PARAMS_PER_BATCH):
            self.client.log_batch(self._id, params=items[start : start + _PARAMS_PER_BATCH])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Upload one file."""
        self.client.log_artifact(self._id, str(path), artifact_path)

    def log_artifacts(self, directory: Path, artifact_path: str | None = None) -> None:
        """Upload a folder's files."""
        self.client.log_artifacts(self._id, str(directory), artifact_path)

    def log_table(self, columns: Mapping[str, list[Any]], artifact_file: str) -> None:
        """Log columns as an MLflow table (shown in the UI's artifact view and by ``mlflow.load_table``)."""
        self.client.log_table(self._id, data=dict(columns), artifact_file=artifact_file)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set run tags."""
        for key, value in tags.items():
            self.client.set_tag(self._id, key, value)


def _log_hydra_dir(tracker: MlflowTracker, hydra_dir: Path, secrets: list[str]) -> None:
    """Log ``.hydra/`` with secrets redacted from its YAML files."""
    with tempfile.TemporaryDirectory() as tmp:
        for source in sorted(hydra_dir.glob("*.yaml")):
            loaded = OmegaConf.to_container(OmegaConf.load(source), resolve=False)
            if isinstance(loaded, list):  # overrides.yaml: key=value strings
                loaded = [redact_override(str(item), secrets) for item in loaded]
            else:
                loaded = redact(loaded, secrets)
            OmegaConf.save(OmegaConf.create(loaded), Path(tmp, source.name))
        tracker.log_artifacts(Path(tmp), ".hydra")


def redact_override(override: str, secrets: list[str] | None = None) -> str:
    """A ``key=value`` override with the value of a secret key, secret values and URL passwords redacted."""
    secrets = _secret_env_values() if secrets is None else secrets
    key, sep, value = override.partition("=")
    if sep and is_secret_key(key.lstrip("+~")):
        return f"{key}={REDACTED}"
    return redact_value(override, secrets)


def active_experiment_id(client: MlflowClient, experiment: str) -> str:
    """The id of the experiment named ``experiment`` in ``client``'s store, created when missing.

    Raises:
        InputError: the experiment exists but is deleted.
    """
    found = client.get_experiment_by_name(experiment)
    if found is not None and found.lifecycle_stage != "active":
        raise InputError("tracking.experiment", f"experiment {experiment!r} is {found.lifecycle_stage}",
                         hint=f"restore it (mlflow experiments restore --experiment-id {found.experiment_id}) "
                              "or choose another tracking.experiment")
    return str(found.experiment_id if found else client.create_experiment(experiment))


def _parent_tag(client: MlflowClient) -> dict[str, str]:
    """``{"mlflow.parentRunId": id}`` when a sweep's parent run is set and exists in this store, else nothing."""
    parent = os.environ.get(PARENT_RUN_ENV, "")
    if not parent:
        return {}
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(parent)
    except MlflowException:
        log.warning("sweep parent run %s is not in this tracking store; the run is not nested under it", parent)
        return {}
    return {PARENT_RUN_TAG: parent}


@contextmanager
def tracking_run(
    *,
    enabled: bool,
    uri: str,
    experiment: str,
    run_name: str | None,
    config: dict[str, Any],
    hydra_dir: Path | None,
    tags: Mapping[str, str],
) -> Iterator[NullTracker]:
    """Open the job's run: params, ``config.yaml`` and ``.hydra/`` logged at start; FAILED on an exception.

    Inside a sweep (``PARENT_RUN_ENV`` names the sweep's parent run, and that run is in this store)
    the run is tagged ``mlflow.parentRunId`` with it, so MLflow shows it nested under the parent.

    Yields:
        A tracker (a :class:`NullTracker` when ``enabled`` is false).
    """
    if not enabled:
        yield NullTracker()
        return
    from mlflow import MlflowClient
    from mlflow.entities import RunStatus

    client = MlflowClient(tracking_uri=uri)
    experiment_id = active_experiment_id(client, experiment)
    run = client.create_run(experiment_id, run_name=run_name, tags={**tags, **_parent_tag(client)})
    tracker = MlflowTracker(uri, run.info.run_id)
    secrets = _secret_env_values()
    safe = redact(config, secrets)
    try:
        tracker.log_params(flatten(safe))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "config.yaml")
            OmegaConf.save(OmegaConf.create(safe), path)
            tracker.log_artifact(path)
        if hydra_dir is not None and hydra_dir.is_dir():
            _log_hydra_dir(tracker, hydra_dir, secrets)
        yield tracker
    except BaseException as err:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, "error.log")
            path.write_text(redact_value("".join(traceback.format_exception(err))))
            try:
                tracker.log_artifact(path)
                tracker.set_tags({"error": redact_value(str(err))[:5000]})
            except Exception as log_err:  # noqa: BLE001 - the original error matters more
                log.warning("could not log the error to MLflow: %s", str(log_err).splitlines()[0][:300])
        try:  # apart from the upload: a run whose error.log could not be stored is still marked
            client.set_terminated(run.info.run_id, status="KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        except Exception as end_err:  # noqa: BLE001 - the original error matters more (the server may be gone)
            log.warning("could not mark the MLflow run ended: %s", str(end_err).splitlines()[0][:300])
        raise
    else:
        client.set_terminated(run.info.run_id, status=RunStatus.to_string(RunStatus.FINISHED))


