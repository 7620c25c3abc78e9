"""Promotion from online evidence, and rollback: the registry side of the experiment.

The offline gate (training/registry.py) decides whether a candidate may face customers; the
online experiment (training/experiment.py) decides whether it replaces the champion. A
promotion moves `champion` to the challenger's version, records the evidence on that version
as tags (`online.*`: decision, lift and its interval, always-valid p-value, SRM p-value, turns
per arm) and remembers the version it replaced (`previous_champion`), which is what
`rollback` restores. A rejection removes the `challenger` alias (the split then serves the
champion only) and tags the version with why.
"""

from __future__ import annotations

from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from training.experiment import Decision
from training.registry import CHALLENGER, CHAMPION, current_champion


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def evidence_tags(decision: Decision) -> dict[str, str]:
    arms = decision.arms
    tags = {"online.decision": decision.action, "online.reason": decision.reason[:500]}
    if decision.lift is not None:
        tags["online.lift_resolution"] = f"{decision.lift:.4f}"
    if decision.interval is not None:
        tags["online.interval"] = f"[{decision.interval[0]:.4f}, {decision.interval[1]:.4f}]"
    if decision.p_value is not None:
        tags["online.p_value"] = f"{decision.p_value:.6f}"
    if decision.srm_p is not None:
        tags["online.srm_p"] = f"{decision.srm_p:.6f}"
    for arm, summary in arms.items():
        tags[f"online.{arm}.turns"] = str(summary["turns"])
        tags[f"online.{arm}.resolution_rate"] = str(summary["resolution_rate"])
        if summary.get("accuracy") is not None:
            tags[f"online.{arm}.accuracy"] = f"{summary['accuracy']:.4f}"
        if summary.get("csat") is not None:
            tags[f"online.{arm}.csat"] = f"{summary['csat']:.3f}"
    return tags


def apply_decision(client: MlflowClient, name: str, decision: Decision) -> dict[str, Any]:
    """Act on a final decision (promote or reject); `continue` changes nothing."""
    challenger = alias_version(client, name, CHALLENGER)
    champion = current_champion(client, name)
    if challenger is None:
        raise ValueError(f"registered model {name!r} has no @challenger: no experiment to decide")
    result = {"model": name, "action": decision.action, "champion": champion,
              "challenger": challenger}  # fmt: skip
    if decision.action == "continue":
        return result
    for key, value in evidence_tags(decision).items():
        client.set_model_version_tag(name, challenger, key, value)
    if decision.promote:
        if champion is not None:
            client.set_model_version_tag(name, challenger, "previous_champion", champion)
        client.set_registered_model_alias(name, CHAMPION, challenger)
        client.delete_registered_model_alias(name, CHALLENGER)
        result["champion"] = challenger
    else:
        client.delete_registered_model_alias(name, CHALLENGER)
    return result


def rollback(client: MlflowClient, name: str) -> dict[str, Any]:
    """Restore the champion the current one replaced (its `previous_champion` tag)."""
    champion = current_champion(client, name)
    if champion is None:
        raise ValueError(f"registered model {name!r} has no @champion to roll back")
    tags = client.get_model_version(name, champion).tags
    previous = tags.get("previous_champion")
    if not previous:
        raise ValueError(f"{name} v{champion} replaced no earlier champion: nothing to restore")
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_model_version_tag(name, champion, "rolled_back", f"to v{previous}")
    return {"model": name, "champion": previous, "rolled_back": champion}
