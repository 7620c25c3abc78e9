"""The learning loop's evidence for the models page: what `scrm loop monitor` and `scrm loop
run` leave behind, read as files and audit entries (never by importing the pipelines: the
application must not depend on them).

    data/loop/monitor_<model>.json   drift share per served version, mean confidence,
                                     abstain rate, online accuracy, alerts (pipelines/monitor.py)
    data/loop/<model>.json           the running online experiment and the decided ones
                                     (lift, interval, always-valid p, SRM p; pipelines/loop_run.py)
    data/feedback/snapshot.json      the last feedback snapshot (pipelines/loop.py)
    audit log, actor scrm-loop       every loop step: trigger, experiment started/promoted/...

A file that is missing or unreadable is "no runs yet" on the page, never an error: a fresh
install has run no loop.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger("ray.serve")
RUNS_SHOWN = 20


def read_json(path: Path) -> dict[str, Any] | None:
    """The file's object, or None when it is missing or not a JSON object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("console: unreadable loop file %s: %s", path.name, error)
        return None
    return value if isinstance(value, dict) else None


def drift_rows(monitor: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per served version the monitoring compared with its reference."""
    if not monitor:
        return []
    champion = str(monitor.get("champion"))
    rows = []
    for version, report in sorted((monitor.get("versions") or {}).items()):
        report = report if isinstance(report, dict) else {}
        rows.append({"version": version, "champion": version == champion,
                     "drift_share": report.get("drift_share"),
                     "mean_confidence": report.get("mean_confidence"),
                     "abstain_rate": report.get("abstain_rate"),
                     "online_accuracy": report.get("online_accuracy"),
                     "alerts": ", ".join(report.get("alerts") or []) or "–"})  # fmt: skip
    return rows


def experiment_rows(state: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The running experiment (decision "running") first, then the decided ones, newest first."""
    if not state:
        return []
    rows = []
    running = state.get("experiment")
    if isinstance(running, dict):
        rows.append({**running, "action": "running", "reason": "collecting traffic"})
    for decided in reversed(state.get("history") or []):
        if isinstance(decided, dict):
            rows.append(decided)
    for row in rows:
        interval = row.get("interval")
        row["interval_text"] = (f"[{interval[0]:.3f}, {interval[1]:.3f}]"
                                if isinstance(interval, list | tuple) and len(interval) == 2
                                else "–")  # fmt: skip
    return rows


def loop_runs(audit: Any, model: str) -> list[dict[str, Any]]:
    """The loop's audited steps for `model`, newest first (`scrm loop run` writes them under
    the platform pseudo-tenant)."""
    if audit is None:
        return []
    try:
        entries = audit.query("platform", resource_id=model, limit=200)
    except Exception as error:  # a locked or damaged audit file must not hide the page
        log.warning("console: audit query for %s failed: %s", model, error)
        return []
    runs = []
    for entry in entries:
        if not str(entry.get("action", "")).startswith("loop.") or len(runs) >= RUNS_SHOWN:
            continue
        detail = entry.get("detail")
        try:
            detail = json.loads(detail) if isinstance(detail, str) else detail or {}
        except ValueError:
            detail = {}
        reasons = detail.get("reasons") or ([detail["reason"]] if detail.get("reason") else [])
        runs.append({"at": entry.get("at"), "step": entry["action"].removeprefix("loop."),
                     "reasons": "; ".join(map(str, reasons)) or "–",
                     "candidate": detail.get("candidate") or detail.get("challenger")})  # fmt: skip
    return runs


def model_evidence(settings: Any, audit: Any, mlflow_ui: str) -> list[dict[str, Any]]:
    """Per loop task's model: drift, experiments, runs, and where MLflow shows them."""
    state_dir = settings.path(settings.loop.state_dir)
    models = []
    for task, model in sorted(settings.loop.tasks.items()):
        spec = settings.serving.models.get(model)
        registered = getattr(spec, "registered_model", model)
        monitor = read_json(state_dir / f"monitor_{model}.json")
        models.append({
            "task": task, "model": model, "registered_model": registered,
            "drift_share": (monitor or {}).get("drift_share"),
            "drift": drift_rows(monitor),
            "experiments": experiment_rows(read_json(state_dir / f"{model}.json")),
            "runs": loop_runs(audit, model),
            "registry_url": f"{mlflow_ui}/#/models/{quote(registered)}",
        })  # fmt: skip
    return models


def snapshot(settings: Any) -> dict[str, Any] | None:
    """The last feedback snapshot's summary (labels written, validation), if one was taken."""
    return read_json(settings.path(settings.loop.feedback_dir) / "snapshot.json")
