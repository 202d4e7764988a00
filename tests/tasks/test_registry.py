"""Registering an adapted table as a pyfunc model from code: predict per OOV policy, tags, manifest, finding a
version by tag, REST serving."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.pyfunc.model import PythonModelContext

from pipeline.formats import file_sha256
from pipeline.serving import MODEL_CODE, EmbeddingModel, UnknownTokenError
from pipeline.subword import SubwordModel, fit_subword, load_subword, save_subword
from pipeline.table import EmbeddingTable
from tasks.registry import _OWN_TAGS, find_version, register_table

NAME = "planted-emb"
DIM = 12
# families of tokens sharing stems, so that unseen forms share n-grams with the table
TOKENS = [f"{stem}{suffix}" for stem in ("runn", "jump", "walk", "swimm", "climb", "paint")
          for suffix in ("", "s", "er", "ing", "ed")] + ["the", "of", "and"]
UNSEEN = "climbers"  # not in the table, shares <cl, cli, clim, ... with it
NO_GRAMS = "qzxv"  # not in the table, no n-gram the subword model knows


@dataclass(frozen=True)
class Registered:
    uri: str
    run_id: str
    table: EmbeddingTable
    subword: SubwordModel
    manifest: dict[str, Any]
    version: str
    cwd_after: list[str]


def make_table() -> EmbeddingTable:
    rng = np.random.default_rng(7)
    return EmbeddingTable(TOKENS, rng.standard_normal((len(TOKENS), DIM)).astype(np.float32))


def make_run(uri: str, root: Path) -> str:
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("registry", artifact_location=(root / "artifacts").as_uri())
    return str(client.create_run(experiment).info.run_id)


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registered]:
    """One registration (default policy ``error``) shared by the module; then the URI is MLflow's default."""
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root}/mlflow.db"
    table = make_table()
    subword = fit_subword(table.tokens, table.matrix)
    manifest = {"base": {"checksum": "b" * 64, "rows": len(table) - 3}, "adapted": {"checksum": table.checksum}}
    elsewhere = root / "cwd"
    elsewhere.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.chdir(elsewhere)  # a fallback to the default store would create mlflow.db here
        run_id = make_run(uri, root)
        name, version = register_table(uri=uri, run_id=run_id, name=NAME, table=table, manifest=manifest,
                                       subword=subword, oov="error", work_dir=root / "work")
        cwd_after = sorted(os.listdir(elsewhere))
        assert name == NAME
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        yield Registered(uri, run_id, table, subword, manifest, version, cwd_after)


@pytest.fixture(scope="module")
def model(registered: Registered) -> Iterator[mlflow.pyfunc.PyFuncModel]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")  # MLflow refuses a python_model.pkl
        yield mlflow.pyfunc.load_model(f"models:/{NAME}/{registered.version}")


def frame(tokens: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"token": tokens})


def test_registration_uses_only_the_given_uri_and_leaves_no_active_run(registered: Registered) -> None:
    assert registered.version == "1"
    assert registered.cwd_after == []
    assert mlflow.active_run() is None
    client = MlflowClient(tracking_uri=registered.uri)
    assert client.get_run(registered.run_id).info.status == "RUNNING"  # the job's run is the job's to end
    [logged] = client.search_logged_models(experiment_ids=[client.get_run(registered.run_id).info.experiment_id])
    assert (logged.name, logged.source_run_id, str(logged.status)) == ("model", registered.run_id, "READY")


def test_the_model_is_saved_as_code_with_its_default_policy_as_config(registered: Registered, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1", dst_path=str(tmp_path)))
    assert not [p.name for p in model_dir.rglob("*") if p.suffix in (".pkl", ".pickle")]  # no python_model.pkl
    assert (model_dir / MODEL_CODE.name).read_text() == MODEL_CODE.read_text()  # the code file, copied
    flavor = yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]["python_function"]
    assert "python_model" not in flavor
    assert (Path(flavor["model_code_path"]).name, flavor["config"]) == (MODEL_CODE.name, {"oov": "error"})

    def no_unpickling(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("something was unpickled")

    import pickle

    import cloudpickle  # MLflow loads a python_model.pkl with these

    for module, function in ((pickle, "load"), (pickle, "loads"), (cloudpickle, "load"), (cloudpickle, "loads")):
        monkeypatch.setattr(module, function, no_unpickling)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    loaded = mlflow.pyfunc.load_model(str(model_dir))
    assert isinstance(loaded.unwrap_python_model(), EmbeddingModel)
    np.testing.assert_array_equal(loaded.predict(frame(["jump"])), registered.table.matrix[[TOKENS.index("jump")]])


def test_load_context_reads_the_default_policy_from_model_config(registered: Registered) -> None:
    saved = mlflow.pyfunc.load_model(f"models:/{NAME}/1").unwrap_python_model()
    assert saved.oov == "error"  # from the saved config: the constructor's default would be the same, so...
    overridden = mlflow.pyfunc.load_model(f"models:/{NAME}/1", model_config={"oov": "zeros"})
    direct = overridden.unwrap_python_model()  # ...a load-time override shows load_context reads the config
    assert direct.oov == "zeros"
    np.testing.assert_array_equal(direct.predict(None, [UNSEEN])[0], np.zeros(DIM, dtype=np.float32))
    with pytest.raises(UnknownTokenError):  # through pyfunc, the signature's param default (fixed at registration)
        overridden.predict(frame([UNSEEN]))
    with pytest.raises(ValueError, match="model_config.oov must be one of error, zeros, subword, got 'nearest'"):
        mlflow.pyfunc.load_model(f"models:/{NAME}/1", model_config={"oov": "nearest"})


def test_known_tokens_get_their_exact_rows(registered: Registered, model: mlflow.pyfunc.PyFuncModel) -> None:
    table = registered.table
    tokens = ["walked", "the", "runn", "walked"]
    rows = [table.index_of(t) for t in tokens]
    out = model.predict(frame(tokens))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (4, DIM)
    np.testing.assert_array_equal(out, table.matrix[rows])
    np.testing.assert_array_equal(model.predict(pd.Series(tokens, name="token")), table.matrix[rows])
    direct = model.unwrap_python_model()  # without MLflow's schema enforcement: a plain list too
    np.testing.assert_array_equal(direct.predict(None, tokens), table.matrix[rows])


def test_lookups_are_exact_no_case_folding(model: mlflow.pyfunc.PyFuncModel) -> None:
    with pytest.raises(UnknownTokenError, match="'Walked' not in table"):
        model.predict(frame(["walked", "Walked"]))


def test_default_policy_error_names_the_first_unknown_token(model: mlflow.pyfunc.PyFuncModel) -> None:
    with pytest.raises(UnknownTokenError, match=rf"token '{UNSEEN}' not in table \(and 1 more unknown\)") as err:
        model.predict(frame(["jump", UNSEEN, "jumps", NO_GRAMS]))
    assert err.value.token == UNSEEN


def test_params_override_zeros(registered: Registered, model: mlflow.pyfunc.PyFuncModel) -> None:
    out = model.predict(frame(["jump", UNSEEN, "of"]), params={"oov": "zeros"})
    table = registered.table
    np.testing.assert_array_equal(out[0], table.vector("jump"))
    np.testing.assert_array_equal(out[1], np.zeros(DIM, dtype=np.float32))
    np.testing.assert_array_equal(out[2], table.vector("of"))


def test_params_override_subword(registered: Registered, model: mlflow.pyfunc.PyFuncModel) -> None:
    out = model.predict(frame([UNSEEN, "paints", NO_GRAMS]), params={"oov": "subword"})
    expected, known = registered.subword.predict([UNSEEN])
    assert known[0] > 0 and np.abs(expected).sum() > 0
    np.testing.assert_array_equal(out[0], expected[0])
    np.testing.assert_array_equal(out[1], registered.table.vector("paints"))  # known tokens keep their rows
    np.testing.assert_array_equal(out[2], np.zeros(DIM, dtype=np.float32))  # no known n-gram: zeros
    # the subword vector lies nearer its family than a random token's row
    climbers = registered.table.matrix[[registered.table.index_of(t) for t in ("climbs", "climber", "climbing")]]
    others = registered.table.matrix[[registered.table.index_of(t) for t in ("the", "of", "and")]]
    assert np.linalg.norm(climbers - out[0], axis=1).mean() < np.linalg.norm(others - out[0], axis=1).mean()


def test_bad_oov_param_is_rejected(model: mlflow.pyfunc.PyFuncModel) -> None:
    with pytest.raises(MlflowException, match="params.oov must be one of error, zeros, subword, got 'nearest'"):
        model.predict(frame(["jump"]), params={"oov": "nearest"})


def test_signature_declares_token_column_float32_tensor_and_oov_param(model: mlflow.pyfunc.PyFuncModel) -> None:
    signature = model.metadata.signature
    assert signature.inputs.input_names() == ["token"]
    [output] = signature.outputs.inputs
    assert (output.type, output.shape) == (np.dtype(np.float32), (-1, DIM))
    [param] = signature.params.params
    assert (param.name, param.dtype.name, param.default) == ("oov", "string", "error")


def test_manifest_is_an_artifact_of_the_model_and_tags_are_set(registered: Registered) -> None:
    client = MlflowClient(tracking_uri=registered.uri, registry_uri=registered.uri)
    names = [a.path for a in mlflow.artifacts.list_artifacts(f"models:/{NAME}/1/artifacts")]
    assert sorted(names) == ["artifacts/manifest.json", "artifacts/subword", "artifacts/table"]
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1/artifacts/manifest.json"))
    assert json.loads(local.read_text()) == registered.manifest
    version = client.get_model_version(NAME, "1")
    assert version.run_id == registered.run_id
    assert version.tags["manifest_sha256"] == file_sha256(local)
    assert version.tags["base_checksum"] == "b" * 64
    assert version.tags["adapted_checksum"] == registered.table.checksum
    assert (version.tags["rows"], version.tags["dim"], version.tags["oov"]) == (str(len(TOKENS)), str(DIM), "error")
    assert set(version.tags) == set(_OWN_TAGS)  # no extra tags unless asked


def test_default_policy_is_fixed_at_registration(registered: Registered, tmp_path: Path) -> None:
    _, version = register_table(uri=registered.uri, run_id=registered.run_id, name=NAME, table=registered.table,
                                manifest=registered.manifest, subword=None, oov="zeros", work_dir=tmp_path)
    assert version == "2"  # a new version of the same registered model
    second = mlflow.pyfunc.load_model(f"models:/{NAME}/2")
    np.testing.assert_array_equal(second.predict(frame([UNSEEN]))[0], np.zeros(DIM, dtype=np.float32))
    with pytest.raises(UnknownTokenError, match=UNSEEN):
        second.predict(frame([UNSEEN]), params={"oov": "error"})
    with pytest.raises(MlflowException, match="saved without a subword model"):
        second.predict(frame([UNSEEN]), params={"oov": "subword"})
    assert mlflow.active_run() is None


def test_subword_policy_without_a_subword_model_fails_at_load(registered: Registered, tmp_path: Path) -> None:
    model_dir = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}/1", dst_path=str(tmp_path)))
    artifacts = {"table": str(model_dir / "artifacts" / "table")}
    with pytest.raises(ValueError, match="oov policy is 'subword' but the model was saved without a subword model"):
        EmbeddingModel("subword").load_context(PythonModelContext(artifacts=artifacts, model_config=None))
    with pytest.raises(ValueError, match="oov policy is 'subword' but the model was saved without a subword model"):
        EmbeddingModel().load_context(PythonModelContext(artifacts=artifacts, model_config={"oov": "subword"}))


def test_extra_tags_go_on_the_version_and_find_version_finds_it(registered: Registered, tmp_path: Path) -> None:
    name = f"{NAME}-rounds"  # a model of its own: the versions of NAME are counted by the tests above
    client = MlflowClient(tracking_uri=registered.uri, registry_uri=registered.uri)
    assert find_version(uri=registered.uri, name=name, tag="round", value="r1") is None  # no such model yet

    made: list[str] = []

    def register(round_id: str) -> str:
        _, version = register_table(uri=registered.uri, run_id=registered.run_id, name=name, table=registered.table,
                                    manifest=registered.manifest, subword=None, oov="zeros",
                                    work_dir=tmp_path / f"work{len(made)}", extra_tags={"round": round_id})
        made.append(version)
        return version

    assert [register("r1"), register("it's r2"), register('"r3"')] == ["1", "2", "3"]
    tags = client.get_model_version(name, "2").tags
    assert tags["round"] == "it's r2" and tags["oov"] == "zeros" and set(tags) == {*_OWN_TAGS, "round"}
    assert find_version(uri=registered.uri, name=name, tag="round", value="r1") == "1"
    assert find_version(uri=registered.uri, name=name, tag="round", value="it's r2") == "2"
    assert find_version(uri=registered.uri, name=name, tag="round", value='"r3"') == "3"
    for value in ("r4", "R1", "r%", "r_", "r1 "):  # exact match only: no LIKE patterns, no case folding
        assert find_version(uri=registered.uri, name=name, tag="round", value=value) is None, value
    assert find_version(uri=registered.uri, name=name, tag="rounds", value="r1") is None  # no such tag
    assert find_version(uri=registered.uri, name=NAME, tag="round", value="r1") is None  # another model's versions
    assert find_version(uri=registered.uri, name=name, tag="oov", value="zeros") == "3"  # several: the newest
    assert register("r1") == "4"  # a retried round
    assert find_version(uri=registered.uri, name=name, tag="round", value="r1") == "4"
    assert mlflow.active_run() is None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tag": "a`b"}, "tag 'a`b' holds a backtick"),
    ({"value": "it's \"x\""}, "value .* holds both ' and \""),
    ({"name": "it's \"x\""}, "name .* holds both ' and \""),
])
def test_find_version_rejects_what_a_search_filter_cannot_express(kwargs: dict[str, str], message: str,
                                                                   tmp_path: Path) -> None:
    arguments = {"uri": f"sqlite:///{tmp_path}/unused.db", "name": "emb", "tag": "round", "value": "r1", **kwargs}
    with pytest.raises(ValueError, match=message):
        find_version(**arguments)
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": ""}, "tracking.register_as must be a registered model name.*got ''"),
    ({"name": "team/emb"}, "tracking.register_as must be .*got 'team/emb'"),
    ({"name": " emb"}, "tracking.register_as must be .*got ' emb'"),
    ({"oov": "x"}, "tracking.oov must be one of error, zeros, subword, got 'x'"),
    ({"oov": "subword", "subword": None}, "tracking.oov is 'subword' but there is no subword model"),
    ({"manifest": {"adapted": {"checksum": "0" * 64}}}, "the manifest's adapted checksum 0{64} is not the table's"),
    ({"extra_tags": {"oov": "zeros"}}, "extra_tags may not set 'oov': register_table sets it"),
    ({"extra_tags": {"round": 7}}, r"extra_tags\['round'\] must be a string, got 7 \(int\)"),
    ({"extra_tags": {"": "x"}}, "extra_tags keys must be non-empty strings, got ''"),
])
def test_bad_arguments_fail_before_anything_is_logged(kwargs: dict[str, Any], message: str, tmp_path: Path) -> None:
    table = make_table()
    arguments: dict[str, Any] = {"uri": f"sqlite:///{tmp_path}/unused.db", "run_id": "0" * 32, "name": "emb",
                                 "table": table, "manifest": {}, "subword": fit_subword(table.tokens, table.matrix),
                                 "oov": "error", "work_dir": tmp_path / "work", **kwargs}
    with pytest.raises(ValueError, match=message):
        register_table(**arguments)
    assert sorted(os.listdir(tmp_path)) == []  # neither a database nor files


def test_subword_model_round_trips_exactly(tmp_path: Path) -> None:
    tokens = [*TOKENS, "naïve", "日本語", "a b"]  # non-ASCII and a space inside n-grams
    vectors = np.random.default_rng(3).standard_normal((len(tokens), 5)).astype(np.float32)
    fitted = fit_subword(tokens, vectors, low=2, high=4)
    save_subword(fitted, tmp_path / "sub")
    loaded = load_subword(tmp_path / "sub")
    assert list(loaded.index.items()) == list(fitted.index.items())  # same n-grams, same rows, same order
    assert loaded.vectors.dtype == np.float32
    np.testing.assert_array_equal(loaded.vectors, fitted.vectors)
    assert (loaded.low, loaded.high, loaded.iterations) == (fitted.low, fitted.high, fitted.iterations)
    np.testing.assert_array_equal(loaded.predict(["runnings", "naïf"])[0], fitted.predict(["runnings", "naïf"])[0])


def test_load_subword_rejects_mismatched_files(tmp_path: Path) -> None:
    table = make_table()
    save_subword(fit_subword(table.tokens, table.matrix), tmp_path)
    meta = json.loads((tmp_path / "subword.json").read_text())
    meta["ngrams"] = meta["ngrams"][:-1]
    (tmp_path / "subword.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"subword.safetensors: vectors are float32 \(\d+, 12\), expected"):
        load_subword(tmp_path)


# -- REST ---------------------------------------------------------------------------------------------
SERVE_DEADLINE = 180.0  # seconds for `mlflow models serve` to answer /ping on a slow shared machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (mlflow and its uvicorn child), SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            process.poll()
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.mark.slow
def test_mlflow_models_serve_answers_rest_requests(registered: Registered, tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    port = _free_port()
    # uvicorn is started by name: the venv's bin must be on PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": registered.uri, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}  # the server would refuse a python_model.pkl
    log = tmp_path / "serve.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [str(bin_dir / "mlflow"), "models", "serve", "-m", f"models:/{NAME}/1", "--env-manager", "local",
             "--host", "127.0.0.1", "-p", str(port)],
            env=env, cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while True:
            if process.poll() is not None:
                pytest.fail(f"mlflow models serve exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            if time.monotonic() - started > SERVE_DEADLINE:
                pytest.fail(f"no answer on {base}/ping after {SERVE_DEADLINE}s:\n{log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=5) as ping:  # noqa: S310 - loopback
                    if ping.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        table, tokens = registered.table, ["climbs", "the", "painted"]
        status, body = _post(f"{base}/invocations",
                             {"dataframe_split": {"columns": ["token"], "data": [[t] for t in tokens]}})
        assert status == 200, body
        got = np.asarray(body["predictions"], dtype=np.float32)
        np.testing.assert_array_equal(got, table.matrix[[table.index_of(t) for t in tokens]])

        status, body = _post(f"{base}/invocations",
                             {"inputs": {"token": ["climbs", UNSEEN]}, "params": {"oov": "subword"}})
        assert status == 200, body
        got = np.asarray(body["predictions"], dtype=np.float32)
        np.testing.assert_array_equal(got[0], table.vector("climbs"))
        np.testing.assert_array_equal(got[1], registered.subword.predict([UNSEEN])[0][0])

        status, body = _post(f"{base}/invocations",
                             {"dataframe_records": [{"token": UNSEEN}, {"token": "of"}], "params": {"oov": "zeros"}})
        assert status == 200, body
        got = np.asarray(body["predictions"], dtype=np.float32)
        np.testing.assert_array_equal(got, np.stack([np.zeros(DIM, np.float32), table.vector("of")]))

        status, body = _post(f"{base}/invocations", {"dataframe_records": [{"token": UNSEEN}]})  # the default
        assert status == 400
        assert body["error_code"] == "INVALID_PARAMETER_VALUE"
        assert f"token '{UNSEEN}' not in table" in body["message"]
    finally:
        _stop(process)
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # mlflow and uvicorn are both gone
    assert process.returncode is not None
