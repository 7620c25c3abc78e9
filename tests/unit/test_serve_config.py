"""Serving pieces that need no Ray: the config file, masking, the log and the A/B report."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from ray.serve.schema import ServeDeploySchema

from pipelines.serve import deploy_config
from privacy.redaction import PredictionRedaction, mask_digits
from serving.deployments import EntityModel, TextModel
from serving.prediction_log import PredictionLog, ab_report, read_log
from settings import ENV_PREFIX, load_settings
from settings.deploy import APPLICATION_DEPLOYMENTS, read_deploy_config
from settings.serving import ModelUserConfig
from tests.support import REPO

CONFIG_FILE = REPO / "serving" / "config.yaml"


def test_config_file_is_a_valid_serve_config_with_one_deployment_per_model() -> None:
    raw = read_deploy_config(CONFIG_FILE)
    schema = ServeDeploySchema.model_validate(raw)  # what `serve run` checks
    app = schema.applications[0]
    assert app.import_path == "crm.app:app_builder"
    names = {d.name for d in app.deployments}
    assert names == {*APPLICATION_DEPLOYMENTS, *load_settings(REPO).serving.models}
    assert raw["logging_config"]["enable_access_log"] is False
    assert raw["http_options"]["host"] == "127.0.0.1"


def test_scrm_serve_passes_the_root_and_the_overrides(monkeypatch) -> None:
    """Replicas load the same settings tree: the Serve args carry only the root, and the
    SCRM__ overrides of the shell that ran `scrm serve` reach the replicas' environment."""
    monkeypatch.setenv(f"{ENV_PREFIX}SERVING__MAX_ITEMS", "8")
    settings = load_settings(REPO)
    raw = deploy_config(settings, None, "127.0.0.1", 9999)
    assert raw["http_options"]["port"] == 9999
    app = raw["applications"][0]
    assert app["args"] == {"root": str(settings.root)}
    env = app["runtime_env"]["env_vars"]
    assert env[f"{ENV_PREFIX}SERVING__MAX_ITEMS"] == "8"
    assert env["MLFLOW_TRACKING_URI"] == settings.tracking_uri
    assert load_settings(settings.root, environ=env).serving.max_items == 8
    assert settings.serving.models["churn"].feature_service == "churn_model_v1"


def test_a_bad_user_config_fails_at_start_up(tmp_path: Path) -> None:
    raw = CONFIG_FILE.read_text(encoding="utf-8").replace("max_batch_size: 16", "max_batch_size: 0")
    (tmp_path / "config.yaml").write_text(raw, encoding="utf-8")
    with pytest.raises(ValueError, match="max_batch_size"):
        read_deploy_config(tmp_path / "config.yaml")
    with pytest.raises(ValueError, match="mode"):
        ModelUserConfig(challenger={"mode": "canary"})


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("电话13800138000", "电话***********"),
        ("卡号 6222-0200-1234-5678 谢谢", "卡号 ****-****-****-**** 谢谢"),
        ("身份证11010519491231002X", "身份证*****************X"),
        ("订单１２３４５６到了吗", "订单******到了吗"),  # full-width digits too
        ("价格199元，3月12日，12345", "价格199元，3月12日，12345"),  # short numbers stay
    ],
)
def test_digit_runs_of_six_or_more_are_masked(text: str, masked: str) -> None:
    assert mask_digits(text) == masked


def rows(variant: str, served: bool, labels: list[str]) -> list[dict]:
    return [
        {
            "request_id": f"r{i}",
            "model": "sentiment",
            "registered_model": "sentiment",
            "variant": variant,
            "served": served,
            "model_version": "2" if variant == "challenger" else "1",
            "input": f"call me on 1380013800{i}",
            "output": {"label": label, "confidence": 0.9 if served else 0.7},
            "latency_ms": 10.0 + i,
            "batch_size": "1",
        }
        for i, label in enumerate(labels)
    ]


def test_log_masks_inputs_and_the_report_compares_variants(tmp_path: Path) -> None:
    db = tmp_path / "predictions.db"
    log = PredictionLog(db, PredictionRedaction())
    log.append(rows("champion", True, ["negative", "positive", "positive", "negative"]))
    log.append(rows("challenger", False, ["negative", "positive", "negative", "negative"]))
    log.flush()
    frame = read_log(db, "sentiment")
    assert len(frame) == 8 and not frame["input"].str.contains("138").any()
    report = ab_report(db, "sentiment")
    assert report["paired_items"] == 4 and report["agreement"] == 0.75
    champion, challenger = report["variants"]["champion"], report["variants"]["challenger"]
    assert (champion["served"], challenger["served"]) == (4, 0)
    assert challenger["versions"] == ["2"] and challenger["mean_confidence"] == 0.7
    assert champion["top_labels"] == {"negative": 2, "positive": 2}
    with pytest.raises(ValueError, match="no rows for model 'churn'"):
        ab_report(db, "churn")


def bare(deployment: Any, **attributes: Any) -> Any:
    """The deployment's class without __init__ (no registry): to test one method."""
    instance = object.__new__(deployment.func_or_class)
    instance.__dict__.update(attributes)
    return instance


def test_entity_answers_parse_the_models_json_columns() -> None:
    spans = '[{"start": 0, "end": 2, "text": "北京", "type": "address"}]'
    model = SimpleNamespace(
        predict=lambda frame: pd.DataFrame({"entities": [spans] * len(frame), "note": ["x"]})
    )
    answers = bare(EntityModel).score(model, [{"text": "北京"}])
    assert answers == [
        {"entities": [{"start": 0, "end": 2, "text": "北京", "type": "address"}], "note": "x"}
    ]


def test_split_sends_the_configured_share_to_the_challenger_stably() -> None:
    settings = ModelUserConfig(challenger={"mode": "split", "share": 0.1})
    model = bare(TextModel, name="intent", settings=settings)
    chosen = [model.takes_challenger(f"req-{i}") for i in range(4000)]
    assert 0.08 < sum(chosen) / len(chosen) < 0.12
    assert chosen == [model.takes_challenger(f"req-{i}") for i in range(4000)]  # retries stay


def test_a_split_key_keeps_one_customer_on_one_arm() -> None:
    from serving.deployments.base import Loaded
    from serving.model_metrics import ModelMetrics

    def fixed(label: str) -> Any:
        return SimpleNamespace(predict=lambda frame: pd.DataFrame({"label": [label] * len(frame),
                                                                   "confidence": 0.9}))  # fmt: skip

    settings = ModelUserConfig(challenger={"mode": "split", "share": 0.5})
    logged: list = []
    model = bare(TextModel, name="intent_en", settings=settings,
                 variants={"champion": Loaded("1", fixed("a")),
                           "challenger": Loaded("2", fixed("b"))},
                 log=SimpleNamespace(append=logged.extend),
                 metrics=ModelMetrics("intent_en", max_labels=3, reference=10, window=10),
                 spec=SimpleNamespace(registered_model="intent_en"))  # fmt: skip
    for customer in ("c1", "c2", "c3", "c4", "c5", "c6"):
        items = [{"text": "x", "id": f"d:{customer}:{i}", "split_key": customer} for i in range(8)]
        answers = model.score_items(items)
        assert len({a["variant"] for a in answers}) == 1  # every turn of a customer: one arm
        assert answers[0]["label"] == ("b" if answers[0]["variant"] == "challenger" else "a")
    assert len(logged) == 48 and {r["variant"] for r in logged} == {"champion", "challenger"}
