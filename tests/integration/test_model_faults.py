"""Model faults (issue 26): a corrupted registered artifact, an unreachable MLflow registry.

A tiny pyfunc (a constant classifier, so no fit) is registered in a throwaway sqlite registry and
served by the text deployment's class itself (no Ray, as test_serve.py does for a missing model).
Then: a candidate whose artifact was corrupted after evaluation is refused by the promotion gate
even though it scores better; the champion alias forced onto a corrupted version (the registry's
files damaged behind the gate's back) leaves the replica answering with the last good version;
with the registry unreachable the replica keeps answering, and a replica that starts then fails
fast with a reason (the gateway's 503) instead of hanging. Each prints its time to decide.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from pipelines.chat_client import free_port
from training.registry import CHALLENGER, CHAMPION, register_and_gate

pytestmark = pytest.mark.integration
NAME = "fault_intent"


class Constant(mlflow.pyfunc.PythonModel):
    """Answers one label for every text: enough to see which version serves."""

    def __init__(self, label: str):
        self.label = label

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        n = len(model_input)
        return pd.DataFrame({"label": [self.label] * n, "confidence": [0.9] * n})


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from tests.support import settings_at

    settings = settings_at(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(settings.tracking_uri)
    settings.path("mlruns").mkdir(parents=True, exist_ok=True)
    experiment = mlflow.create_experiment("faults", artifact_location=str(tmp_path / "artifacts"))
    return settings, experiment


def log_constant(experiment: str, label: str) -> tuple[str, Path]:
    """(model uri, artifact folder) of a logged Constant(label)."""
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(name="model", python_model=Constant(label))
    logged = mlflow.get_logged_model(info.model_id)
    return info.model_uri, Path(logged.artifact_location.removeprefix("file://"))


def corrupt(folder: Path) -> None:
    """What a half-written upload or a bad disk leaves: the pickled model is junk."""
    (pickled,) = folder.rglob("python_model.pkl")
    pickled.write_bytes(b"\x80\x05not a pickle at all")


def replica(settings):
    from privacy.redaction import PredictionRedaction
    from serving.deployments import DEPLOYMENTS
    from settings.serving import ModelSpec

    spec = ModelSpec(kind="text", registered_model=NAME)
    return DEPLOYMENTS["text"].func_or_class(NAME, spec, settings, PredictionRedaction())


def answer(served) -> tuple[str, str]:
    (one,) = served.score_items([{"text": "查余额", "id": f"r-{time.monotonic_ns()}"}])
    return one["label"], one["model_version"]


def test_a_corrupted_artifact_is_refused_and_serving_keeps_the_last_good(registry) -> None:
    settings, experiment = registry
    good_uri, _ = log_constant(experiment, "balance")
    first = register_and_gate(good_uri, NAME, 0.8, lambda uri: 0.8, 0.0, [], {})
    assert first.alias == CHAMPION
    served = replica(settings)
    assert answer(served) == ("balance", "1")

    broken_uri, folder = log_constant(experiment, "card")
    corrupt(folder)
    started = time.perf_counter()
    refused = register_and_gate(broken_uri, NAME, 0.99, lambda uri: 0.8, 0.0, [], {})
    gate_s = time.perf_counter() - started
    assert refused.alias == CHALLENGER  # it scored better, and still is no champion
    assert refused.reason.startswith("the artifact does not load (")
    client = MlflowClient()
    assert str(client.get_model_version_by_alias(NAME, CHAMPION).version) == "1"

    # Behind the gate's back: champion moved onto the broken version (a registry edit by hand).
    client.set_registered_model_alias(NAME, CHAMPION, refused.version)
    started = time.perf_counter()
    status = served.refresh()
    refresh_s = time.perf_counter() - started
    assert status["loaded"] and status["versions"] == {CHAMPION: "1"}
    assert answer(served) == ("balance", "1")  # the last good model keeps answering
    print(f"corrupt artifact: gate refused in {gate_s:.2f}s; replica kept v1 ({refresh_s:.2f}s)")


def test_an_unreachable_registry_keeps_the_model_and_fails_fast_when_none(
    registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, experiment = registry
    good_uri, _ = log_constant(experiment, "balance")
    register_and_gate(good_uri, NAME, 0.8, lambda uri: 0.8, 0.0, [], {})
    served = replica(settings)
    assert answer(served) == ("balance", "1")

    # The registry's server is gone: nothing listens on its port.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    gone = f"http://127.0.0.1:{free_port()}"
    served.client = MlflowClient(gone)
    started = time.perf_counter()
    try:
        served.refresh()  # the alias poll; poll_forever logs what it raises and polls again
    except Exception as error:
        print(f"alias poll against a dead registry raised {type(error).__name__}")
    poll_s = time.perf_counter() - started
    assert poll_s < 10
    assert answer(served) == ("balance", "1")

    from serving.deployments.base import ModelUnavailable

    monkeypatch.setenv("MLFLOW_TRACKING_URI", gone)
    fresh_settings = settings.model_copy(
        update={"mlflow": settings.mlflow.model_copy(update={"tracking_uri": gone})}
    )
    started = time.perf_counter()
    try:
        fresh = replica(fresh_settings)
    except Exception as error:  # the replica's constructor fails: Serve restarts it
        start_s = time.perf_counter() - started
        print(f"a replica starting without the registry failed in {start_s:.2f}s: {error!r}")
        assert start_s < 10
        return
    start_s = time.perf_counter() - started
    with pytest.raises(ModelUnavailable, match="not loaded"):
        fresh.score_items([{"text": "查余额", "id": "r-x"}])
    assert start_s < 10 and os.environ["MLFLOW_TRACKING_URI"] == gone
    print(f"unreachable registry: poll {poll_s:.2f}s, kept v1; new replica 503 in {start_s:.2f}s")
