"""Against a real ``mlflow server`` on loopback: adapt and retrain rounds, and the server going away mid-round."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from planted import CLUSTERS, Planted, planted_corpus

NAME = "served-emb"
MLFLOW = Path(sys.executable).parent / "mlflow"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``mlflow server`` with a sqlite backend and its artifacts in a folder, on a free loopback port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [str(MLFLOW), "server", "--backend-store-uri", f"sqlite:///{self.root}/server.db",
                   "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", "1"]
        env = {**os.environ, "PATH": f"{MLFLOW.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.process = subprocess.Popen(command, cwd=self.root, env=env, stdout=subprocess.DEVNULL,
                                        stderr=open(self.root / "server.log", "ab"),  # noqa: SIM115
                                        start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not start: " + (self.root / "server.log").read_text()[-3000:])
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "server"
    root.mkdir()
    running = Server(root)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _job(module: str, args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.slow
def test_adapt_and_retrain_rounds_against_a_tracking_server_that_then_goes_away(
        server: Server, planted: Planted, tmp_path: Path) -> None:
    a = CLUSTERS["a"]
    related = tmp_path / "related.tsv"
    related.write_text("".join(f"zorblax\t{w}\n" for w in a[:3]) + f"{a[2]}\t{a[3]}\nbolt\tbrace\n", encoding="utf-8")
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "1.txt").write_text("\n".join(planted_corpus()) + "\n", encoding="utf-8")
    common = ["embedding=file", f"embedding.path={planted.table_path}", "induce.window=3", "progress=false",
              f"tracking.uri={server.uri}", "tracking.experiment=served", f"evaluate.pairs=[{related}]",
              "train.epochs=1", "train.batch_size=16", "train.sample=0"]
    adapted = _job("tasks.adapt", [*common, "corpus=files", f"corpus.paths=[{shards / '1.txt'}]",
                                   "hydra.run.dir=adapt"], tmp_path)
    assert adapted.returncode == 0, adapted.stderr[-3000:]

    retrain = [*common, f"schedule.source={shards}", f"tracking.register_as={NAME}", f"schedule.work_dir={tmp_path}/r",
               "schedule.gates=[{metric: eval/pairs/related/auc, max_drop: 0.2}]", "hydra.run.dir=retrain"]
    first = _job("tasks.retrain", retrain, tmp_path)
    assert first.returncode == 0 and "models:/served-emb/1 promoted" in first.stdout, first.stderr[-3000:]
    (shards / "2.txt").write_text("\n".join(planted_corpus(seed=7)) + "\n", encoding="utf-8")
    second = _job("tasks.retrain", retrain, tmp_path)
    assert second.returncode == 0 and "models:/served-emb/2 promoted" in second.stdout, second.stderr[-3000:]
    client = MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"
    experiment = client.get_experiment_by_name("served")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["task"] for r in runs) == ["adapt", "retrain", "retrain"]
    assert all(r.info.status == "FINISHED" for r in runs)

    # a third round; the server dies while it trains: the job fails on one line, the registry is as it was
    (shards / "3.txt").write_text("\n".join(planted_corpus(seed=8)) + "\n", encoding="utf-8")
    slow = [o for o in retrain if not o.startswith("train.epochs")] + [
        "train.epochs=400", "train.checkpoint_every=5", "train.patience=1000", "train.monitor=heldout_loss",
        "train.log_every=1"]
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    process = subprocess.Popen([sys.executable, "-m", "tasks.retrain", *slow], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list((tmp_path / "r" / NAME).glob("*/train/checkpoints/checkpoint")):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint within 300 s"
        time.sleep(0.2)
    server.stop()
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and server.uri in errors[0], stderr[-3000:]
    server.start()  # the same store, back: the champion is still version 2, and no version 3 exists
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == "2"
    assert sorted(int(v.version) for v in client.search_model_versions(f"name = '{NAME}'")) == [1, 2]
