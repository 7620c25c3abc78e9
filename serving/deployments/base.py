"""What every model deployment shares: registry aliases, hot swap, batching, A/B, the log.

A replica holds the `champion` (and, in A/B modes, the `challenger`) version of one registered
model. It re-reads the aliases every `poll_interval_s` and whenever `reconfigure` runs (a
`scrm serve reload` changes `reload_token`); a new version is loaded in a worker thread while
the old one keeps answering, then swapped in with one assignment, so no request fails during a
switch. A model that is not registered yet leaves the replica up and answering "not loaded"
until the alias appears.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from ray import serve

from serving.metrics import Metrics
from serving.model_metrics import ModelMetrics
from serving.prediction_log import PredictionLog, Redaction
from serving.telemetry import Telemetry
from settings import Settings
from settings.serving import ModelSpec, ModelUserConfig

log = logging.getLogger("ray.serve")
CHAMPION, CHALLENGER = "champion", "challenger"


class ModelUnavailable(RuntimeError):
    """No version of the model is loaded (not registered yet, or no `champion` alias)."""


@dataclass(frozen=True)
class Loaded:
    version: str
    model: Any


class RegistryModel:
    """Base of the family deployments; a family only says how to score a list of items."""

    def __init__(self, name: str, spec: ModelSpec, settings: Settings, redaction: Redaction):
        import mlflow
        from mlflow import MlflowClient

        redaction.install_logs()  # model replicas' logs never carry raw phone/ID/card numbers
        mlflow.set_tracking_uri(settings.tracking_uri)
        self.name = name
        self.spec = spec
        self.client = MlflowClient(settings.tracking_uri)
        self.settings = ModelUserConfig()
        self.variants: dict[str, Loaded] = {}
        self.problem: str | None = None
        self.refresh_lock = threading.Lock()
        self.poller: asyncio.Task | None = None
        self.log = PredictionLog(settings.prediction_log, redaction)
        watch = settings.monitoring  # AI and system metrics of this replica (issue 20)
        self.metrics = ModelMetrics(name, watch.max_label_values, watch.drift_reference,
                                    watch.drift_window)  # fmt: skip
        self.store_metrics = Metrics()
        self.telemetry = Telemetry(name, watch.telemetry_interval_s).start()
        self.refresh()

    # --- registry -------------------------------------------------------------------------
    def alias_version(self, alias: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            with self.store_metrics.timed("mlflow", "get_model_version_by_alias"):
                found = self.client.get_model_version_by_alias(self.spec.registered_model, alias)
            return str(found.version)
        except MlflowException:
            return None

    def refresh(self) -> dict[str, str | None]:
        """Load whatever the aliases point at now; keep the old version until the new one works."""
        import mlflow

        wanted = [CHAMPION] + ([CHALLENGER] if self.settings.challenger.mode != "off" else [])
        with self.refresh_lock:
            for alias in wanted:
                version = self.alias_version(alias)
                current = self.variants.get(alias)
                if version is None:
                    if alias == CHALLENGER:
                        self.variants.pop(alias, None)
                    elif current is None:
                        self.problem = (
                            f"model {self.name} is not loaded: registered model "
                            f"{self.spec.registered_model!r} has no @champion version yet"
                        )
                    continue
                if current and current.version == version:
                    continue
                try:
                    uri = f"models:/{self.spec.registered_model}/{version}"
                    self.variants[alias] = Loaded(version, mlflow.pyfunc.load_model(uri))
                    log.info("%s: %s is now version %s", self.name, alias, version)
                    if alias == CHAMPION:
                        self.problem = None
                except Exception as error:  # a broken new version must not take the old one down
                    log.exception("%s: loading version %s failed", self.name, version)
                    if current is None and alias == CHAMPION:
                        self.problem = f"model {self.name} v{version} failed to load: {error}"
            if CHALLENGER not in wanted:
                self.variants.pop(CHALLENGER, None)
        return self.status()

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        self.settings = ModelUserConfig(**(user_config or {}))
        self.predict.set_max_batch_size(self.settings.max_batch_size)
        self.predict.set_batch_wait_timeout_s(self.settings.batch_wait_timeout_s)
        await asyncio.to_thread(self.refresh)
        if self.poller is None and self.settings.poll_interval_s > 0:
            self.poller = asyncio.get_running_loop().create_task(self.poll_forever())

    async def poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval_s or 30)
            if self.settings.poll_interval_s > 0:
                try:
                    await asyncio.to_thread(self.refresh)
                except Exception:  # the registry may be briefly unreachable: try again later
                    log.exception("%s: alias poll failed", self.name)

    def status(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "registered_model": self.spec.registered_model,
            "loaded": CHAMPION in self.variants,
            "versions": {alias: loaded.version for alias, loaded in self.variants.items()},
            "challenger_mode": self.settings.challenger.mode,
            "problem": self.problem,
        }

    async def reload(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.refresh)

    # --- scoring --------------------------------------------------------------------------
    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def predict(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return self.score_items(items)

    async def predict_many(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Unbatched: one call scores the caller's whole list (multi-item requests)."""
        return self.score_items(items)

    def score(self, model: Any, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def logged_input(self, item: dict[str, Any]) -> tuple[Any, Any]:
        """(input, features) as the prediction log stores them."""
        return item.get("text"), item.get("features")

    def takes_challenger(self, item_id: str) -> bool:
        """Deterministic split by item id (or the item's `split_key`, the customer, so one
        customer stays on one arm): a retried request lands on the same variant."""
        share = self.settings.challenger.share
        digest = hashlib.sha1(f"{self.name}:{item_id}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < share

    def score_items(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        variants = dict(self.variants)  # one consistent view even if a swap lands meanwhile
        if CHAMPION not in variants:
            raise ModelUnavailable(self.problem or f"model {self.name} is not loaded")
        mode = self.settings.challenger.mode
        challenger = variants.get(CHALLENGER)
        route = [
            CHALLENGER
            if challenger
            and mode == "split"
            and self.takes_challenger(item.get("split_key") or item["id"])
            else CHAMPION
            for item in items
        ]
        answers: list[dict[str, Any] | None] = [None] * len(items)
        shadow: list[dict[str, Any]] = []
        for variant in (CHAMPION, CHALLENGER):
            chosen = [i for i, r in enumerate(route) if r == variant]
            if chosen:
                loaded = variants[variant]
                outputs = self.scored(loaded, [items[i] for i in chosen])
                for i, output in zip(chosen, outputs, strict=True):
                    answers[i] = self.named(output, variant, loaded.version, len(items))
        if challenger and mode == "shadow":
            for output in self.scored(challenger, items):
                shadow.append(self.named(output, CHALLENGER, challenger.version, len(items)))
        self.write_log(items, answers, shadow)
        return answers  # type: ignore[return-value]

    def scored(self, loaded: Loaded, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`score` with its latency, confidences, labels and failures in the AI metrics."""
        started = time.perf_counter()
        try:
            outputs = self.score(loaded.model, items)
        except Exception:
            self.metrics.failed()
            raise
        self.metrics.observe(loaded.version, outputs, time.perf_counter() - started)
        return outputs

    def named(self, output: dict, variant: str, version: str, batch: int) -> dict[str, Any]:
        return {
            **output,
            "model_name": self.name,
            "model_version": version,
            "variant": variant,
            "batch_size": batch,
        }

    def write_log(self, items: list[dict], answers: list, shadow: list[dict]) -> None:
        now = time.time()
        rows = []
        for served, outputs in ((True, answers), (False, shadow)):
            for item, output in zip(items, outputs, strict=False):  # shadow may be empty
                text, features = self.logged_input(item)
                rows.append(
                    {
                        "request_id": item["id"],
                        "tenant": item.get("tenant"),
                        "model": self.name,
                        "registered_model": self.spec.registered_model,
                        "variant": output["variant"],
                        "served": served,
                        "model_version": output["model_version"],
                        "input": text,
                        "features": features,
                        "output": {k: v for k, v in output.items() if k not in SKIP_IN_LOG},
                        "latency_ms": round((now - item.get("sent_at", now)) * 1000, 3),
                        "batch_size": str(len(items)),
                    }
                )
        self.log.append(rows)

    def __del__(self) -> None:
        if getattr(self, "telemetry", None) is not None:
            self.telemetry.stop()
        if getattr(self, "poller", None):
            self.poller.cancel()


SKIP_IN_LOG = {"model_name", "model_version", "variant", "batch_size"}


def plain(value: Any) -> Any:
    """numpy scalars -> Python, so answers serialise as JSON."""
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        try:
            return value.item()
        except (ValueError, AttributeError):
            return value
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
