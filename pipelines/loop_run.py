"""`scrm loop run`: one step of the learning loop for one text task, audited.

    no experiment running:  feedback snapshot -> trigger policy -> (triggered) dvc repro of the
                            task (feedback labels are a dependency of `train`) -> the existing
                            offline gate -> the candidate as @challenger: the experiment starts
    experiment running:     feedback snapshot -> per-arm outcomes since it started -> decision
                            (SRM, mSPRT, guardrails) -> promote with the evidence as MLflow tags,
                            or reject; `continue` waits for more traffic

Run it on a schedule (cron, or `--every`): each call does what the state calls for, so the
system goes from drift to a promoted, evidence-backed champion with no human step besides
agents labelling. Every step is written to the privacy audit log (hash-chained).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from pipelines.io import write_json
from pipelines.loop import (
    feedback_dir,
    feedback_snapshot,
    labels_file,
    read_prediction_log,
    read_state,
    repro,
    state_file,
)
from pipelines.serving_split import switch_split
from settings import Settings
from settings.loop import TriggerSettings


@dataclass
class LoopStats:
    drift_share: float | None = None
    online_accuracy: float | None = None
    judged: int = 0
    new_labels: int = 0
    champion_age_days: float | None = None


def trigger_reasons(stats: LoopStats, rules: TriggerSettings) -> list[str]:
    """Why to retrain now (empty: not now). Any one reason is enough."""
    reasons = []
    if stats.drift_share is not None and stats.drift_share > rules.drift_share:
        reasons.append(f"drift: {stats.drift_share:.2f} of columns drifted > {rules.drift_share}")
    accuracy = stats.online_accuracy
    judged_enough = stats.judged >= rules.min_judged and accuracy is not None
    if judged_enough and accuracy < rules.min_online_accuracy:  # type: ignore[operator]
        reasons.append(
            f"online accuracy {accuracy:.3f} < {rules.min_online_accuracy} "
            f"on {stats.judged} judged turns"
        )
    if stats.new_labels >= rules.new_labels:
        reasons.append(f"{stats.new_labels} new labels >= {rules.new_labels}")
    age = stats.champion_age_days
    if age is not None and age > rules.schedule_days:
        reasons.append(f"champion is {age:.1f} days old > {rules.schedule_days}")
    return reasons


def audit(settings: Settings, action: str, model: str, detail: dict[str, Any]) -> None:
    from privacy.admin import audit_key, vault_of
    from privacy.audit import AuditLog

    config = settings.privacy
    key = audit_key(config, settings.root, vault_of(config, settings.root))
    AuditLog(settings.path(config.audit_db), key=key).record(
        actor="scrm-loop", actor_tenant="platform", actor_role="system",
        action=f"loop.{action}", resource_type="model", resource_id=model,
        resource_tenant=None, effect="allow", rule="learning-loop",
        detail=json.loads(json.dumps(detail, default=str)),
    )  # fmt: skip


def registered_name(settings: Settings, model: str) -> str:
    spec = settings.serving.models.get(model)
    return spec.registered_model if spec is not None else model


def loop_stats(settings: Settings, task: str, model: str) -> LoopStats:
    """What the trigger reads: drift (the monitoring report, when one was made), the
    champion's agent-confirmed accuracy, labels not yet trained on, the champion's age."""
    from mlflow import MlflowClient

    from training.registry import current_champion

    state = read_state(settings, model)
    stats = LoopStats()
    monitor = settings.path(settings.loop.state_dir) / f"monitor_{model}.json"
    if monitor.is_file():
        stats.drift_share = json.loads(monitor.read_text()).get("drift_share")
    feedback = pd.read_parquet(feedback_dir(settings) / "feedback.parquet")
    client = MlflowClient(settings.tracking_uri)
    champion = current_champion(client, registered_name(settings, model))
    judged = feedback[(feedback["model"] == model) & feedback["correct"].notna()
                      & feedback["kind"].str.startswith("intent_")
                      & (feedback["model_version"] == champion)]  # fmt: skip
    stats.judged = len(judged)
    if len(judged):
        stats.online_accuracy = float(judged["correct"].astype(float).mean())
    path = labels_file(settings, task)
    labels = len(pd.read_parquet(path)) if path.is_file() else 0
    stats.new_labels = labels - int(state.get("trained_labels", 0))
    if champion is not None:
        version = client.get_model_version(registered_name(settings, model), champion)
        stats.champion_age_days = (time.time() * 1000 - version.creation_timestamp) / 86_400_000
    return stats


def served_split(settings: Settings, model: str) -> str | None:
    """Why the deployment of `model` would not run the experiment as configured (None: it
    splits by customer at `loop.experiment.share`), the loop's overlay included."""
    import yaml

    from pipelines.serving_split import apply_overlay, read_overlay

    path = settings.path(settings.serving.config)
    if not path.is_file():
        return f"no Serve config at {path}"
    raw = apply_overlay(yaml.safe_load(path.read_text(encoding="utf-8")), read_overlay(settings))
    for entry in raw["applications"][0].get("deployments", []):
        if entry.get("name") == model:
            split = (entry.get("user_config") or {}).get("challenger") or {}
            share = settings.loop.experiment.share
            if split.get("mode") != "split" or abs(float(split.get("share", 0)) - share) > 1e-9:
                wanted = f"challenger: {{mode: split, share: {share}}}"
                return f"{model} serves challenger {split or 'off'}: set {wanted}, serve reload"
            return None
    return f"{model} is not a deployment of {path}"


def start_experiment(settings: Settings, task: str, model: str, reasons: list[str]) -> dict:
    """Retrain through dvc, let the offline gate judge, expose a winner as @challenger."""
    from mlflow import MlflowClient

    from training.online_promotion import alias_version
    from training.registry import CHALLENGER, CHAMPION, current_champion

    name = registered_name(settings, model)
    client = MlflowClient(settings.tracking_uri)
    before = current_champion(client, name)
    repro(task, settings.root)
    promotion = json.loads((settings.model_dir(task) / "promotion.json").read_text())
    new = str(promotion["version"])
    result = {"model": model, "reasons": reasons, "candidate": new, "champion": before,
              "offline": promotion["reason"]}  # fmt: skip
    if promotion["alias"] == CHAMPION and before is not None and new != before:
        # the offline gate passed it: customers decide, not the frozen test split
        client.set_registered_model_alias(name, CHAMPION, before)
        client.set_registered_model_alias(name, CHALLENGER, new)
    elif promotion["alias"] != CHAMPION:
        if alias_version(client, name, CHALLENGER) == new:
            client.delete_registered_model_alias(name, CHALLENGER)
        result["experiment"] = "not started: the candidate failed the offline gate"
        audit(settings, "offline_gate_failed", model, result)
        return result
    labels = labels_file(settings, task)
    state = {"experiment": {"started_at": pd.Timestamp.now("UTC").isoformat(),
                            "champion": before, "challenger": new, "p_value": None},
             "trained_labels": len(pd.read_parquet(labels)) if labels.is_file() else 0}  # fmt: skip
    write_json(state_file(settings, model), state)
    result["experiment"] = "started" if before else "first champion: no experiment"
    if before:  # the loop switches the split on and reloads a running server itself
        result["serving"] = switch_split(settings, model, settings.loop.experiment.share)
        if problem := served_split(settings, model):
            result["serving"]["problem"] = problem  # the SRM check would stop it anyway
    audit(settings, "experiment_started", model, result)
    return result


def look(settings: Settings, model: str) -> dict[str, Any]:
    """The running experiment's decision now; acts on promote/reject."""
    import mlflow
    from mlflow import MlflowClient

    from training.experiment import ExperimentRules, arms_from_frames, decide
    from training.online_promotion import apply_decision

    state = read_state(settings, model)
    running = state["experiment"]
    folder = feedback_dir(settings)
    turns = pd.read_parquet(folder / "served_turns.parquet")
    feedback = pd.read_parquet(folder / "feedback.parquet")
    since = pd.Timestamp(running["started_at"])
    turns = turns[(turns["model"] == model)
                  & (pd.to_datetime(turns["at"], utc=True, format="ISO8601") >= since)]  # fmt: skip
    log = read_prediction_log(settings)
    if not log.empty and "model" in log:
        log = log[(log["model"] == model) & (log["served"].astype(int) == 1)]
        log = log[pd.to_datetime(log["at"], utc=True, format="ISO8601") >= since]
    arms = arms_from_frames(turns, feedback, log if len(log) else None)
    rules = ExperimentRules(**settings.loop.experiment.model_dump(exclude={"share"}))
    from training.experiment import Arm

    champion = arms.get("champion", Arm("champion"))
    challenger = arms.get("challenger", Arm("challenger"))
    decision = decide(champion, challenger, settings.loop.experiment.share, rules,
                      running.get("p_value"))  # fmt: skip
    client = MlflowClient(settings.tracking_uri)
    acted = apply_decision(client, registered_name(settings, model), decision)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_experiment(f"online-{model}")
    with mlflow.start_run(run_name=f"look-{decision.action}"):
        mlflow.log_metrics({f"{arm}_{k}": float(v) for arm, s in decision.arms.items()
                            for k, v in s.items() if isinstance(v, int | float)})  # fmt: skip
        if decision.p_value is not None:
            mlflow.log_metrics({"p_value": decision.p_value, "lift": decision.lift or 0.0})
        mlflow.set_tags({"decision": decision.action, "challenger": running["challenger"]})
    running["p_value"] = decision.p_value
    result = {**acted, **decision.to_dict()}
    if decision.action != "continue":
        state["history"] = [*state.get("history", []), {**running, **decision.to_dict()}]
        state.pop("experiment")
        result["serving"] = switch_split(settings, model, None)  # back to the config file
    write_json(state_file(settings, model), state)
    audit(settings, f"experiment_{decision.action}", model, result)
    return result


def run_once(settings: Settings, task: str, force: bool = False) -> dict[str, Any]:
    """One loop step for `task` (a text task of `loop.tasks`)."""
    if task not in settings.loop.tasks:
        raise ValueError(f"unknown loop task {task!r}; known: {', '.join(settings.loop.tasks)}")
    model = settings.loop.tasks[task]
    snapshot = feedback_snapshot(settings)
    if "experiment" in read_state(settings, model):
        return {"step": "experiment", **look(settings, model)}
    stats = loop_stats(settings, task, model)
    reasons = trigger_reasons(stats, settings.loop.trigger) or (["forced"] if force else [])
    audit(settings, "trigger", model, {"stats": asdict(stats), "reasons": reasons})
    if not reasons:
        return {"step": "trigger", "triggered": False, "stats": asdict(stats),
                "snapshot": snapshot}  # fmt: skip
    return {"step": "retrain", "stats": asdict(stats), **start_experiment(settings, task, model,
                                                                          reasons)}  # fmt: skip


def rollback_model(settings: Settings, model: str) -> dict[str, Any]:
    from mlflow import MlflowClient

    from training.online_promotion import rollback

    result = rollback(MlflowClient(settings.tracking_uri), registered_name(settings, model))
    audit(settings, "rollback", model, result)
    return result
