"""The loop switches the experiment's traffic split itself: an overlay every deploy of the
Serve application applies (start and reload), and a reload of a running server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ray.serve.schema import ServeDeploySchema

from pipelines import serve
from pipelines.serve import ServeError, deploy_config
from pipelines.serving_split import apply_overlay, read_overlay, switch_split, write_overlay
from settings.deploy import read_deploy_config
from settings.serving import ModelUserConfig
from tests.support import REPO, settings_at


@pytest.fixture()
def settings(tmp_path: Path):
    settings = settings_at(tmp_path)
    (tmp_path / "serving").mkdir()
    shutil.copy(REPO / "serving" / "config.yaml", tmp_path / "serving" / "config.yaml")
    return settings


def challenger_of(raw: dict, model: str) -> dict | None:
    for deployment in raw["applications"][0]["deployments"]:
        if deployment["name"] == model:
            return (deployment.get("user_config") or {}).get("challenger")
    raise KeyError(model)


def test_the_overlay_changes_only_the_named_deployment(settings) -> None:
    raw = read_deploy_config(settings.path(settings.serving.config))
    assert challenger_of(raw, "intent_en") is None  # not split by the file
    split = apply_overlay(raw, {"intent_en": {"mode": "split", "share": 0.5}})
    assert challenger_of(split, "intent_en") == {"mode": "split", "share": 0.5}
    assert challenger_of(raw, "intent_en") is None  # the file's dict is left alone
    assert challenger_of(split, "churn") == challenger_of(raw, "churn")
    ServeDeploySchema.model_validate(split)
    entry = next(d for d in split["applications"][0]["deployments"] if d["name"] == "intent_en")
    assert ModelUserConfig(**entry["user_config"]).challenger.share == 0.5


def test_every_deploy_applies_the_loops_split_until_it_is_cleared(settings) -> None:
    write_overlay(settings, "intent_en", 0.5)
    assert read_overlay(settings) == {"intent_en": {"mode": "split", "share": 0.5}}
    raw = deploy_config(settings, None, "127.0.0.1", 9999)  # what start and reload deploy
    assert challenger_of(raw, "intent_en") == {"mode": "split", "share": 0.5}
    write_overlay(settings, "intent_en", None)
    assert read_overlay(settings) == {}
    assert challenger_of(deploy_config(settings, None, "127.0.0.1", 9999), "intent_en") is None


def test_a_running_server_is_reloaded(settings, monkeypatch) -> None:
    reloads = []
    monkeypatch.setattr(serve, "running_pid", lambda s: 4242)
    monkeypatch.setattr(serve, "request_reload", lambda s, timeout_s=120: reloads.append(s))
    result = switch_split(settings, "intent_en", 0.5)
    assert result == {"model": "intent_en", "challenger": {"mode": "split", "share": 0.5},
                      "reload": "applied"}  # fmt: skip
    assert len(reloads) == 1
    assert switch_split(settings, "intent_en", None)["challenger"] == "as serving/config.yaml"
    assert len(reloads) == 2 and read_overlay(settings) == {}


def test_no_server_or_a_failed_reload_is_reported_not_raised(settings, monkeypatch) -> None:
    monkeypatch.setattr(serve, "running_pid", lambda s: None)
    assert switch_split(settings, "intent_en", 0.5)["reload"].startswith("no server running")

    def fails(s, timeout_s=120):
        raise ServeError("server pid 4242 did not confirm the reload within 120s")

    monkeypatch.setattr(serve, "running_pid", lambda s: 4242)
    monkeypatch.setattr(serve, "request_reload", fails)
    result = switch_split(settings, "intent_en", 0.5)
    assert result["reload"].startswith("failed: server pid 4242")
    assert read_overlay(settings)["intent_en"]["share"] == 0.5  # applies at the next start
