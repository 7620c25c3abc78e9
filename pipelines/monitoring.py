"""Prometheus alert rules, Prometheus and Alertmanager configuration, made from settings.

`scrm monitor rules` writes monitoring/rules/scrm.rules.yml from params.yaml `monitoring:`
(thresholds and SLOs live only there); `scrm monitor config` writes prometheus.yml and
alertmanager.yml for a gateway URL; `scrm monitor up` (`make monitor`) runs Debian's
`prometheus` and `prometheus-alertmanager` on them until Ctrl-C. The SLO alerts follow the
Google SRE workbook's multi-window, multi-burn-rate recipe: page when the 1 h and 5 min burn
rates both exceed 14.4 (2 % of a 30-day budget in an hour) or the 6 h and 30 min ones exceed 6;
open a ticket at 3 (1 d and 2 h) or 1 (3 d and 6 h).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from settings import Settings

RULES_FILE = "monitoring/rules/scrm.rules.yml"
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
# (severity, [(long window, short window, burn rate)])
BURNS = (
    ("page", (("1h", "5m", 14.4), ("6h", "30m", 6.0))),
    ("ticket", (("1d", "2h", 3.0), ("3d", "6h", 1.0))),
)
REQUESTS = "scrm_requests_total"
BUCKETS = "scrm_request_latency_seconds_bucket"
COUNT = "scrm_request_latency_seconds_count"


def slo_records(settings: Settings) -> list[dict[str, Any]]:
    """Error ratios of both SLOs over every window the burn-rate alerts read."""
    le = format_le(settings.monitoring.slo.latency_s)
    records = []
    for window in WINDOWS:
        records.append({
            "record": f"scrm:slo_availability_errors:ratio_rate{window}",
            "expr": f'sum(rate({REQUESTS}{{status=~"5.."}}[{window}])) '
                    f"/ sum(rate({REQUESTS}[{window}]))",
        })  # fmt: skip
        records.append({
            "record": f"scrm:slo_latency_errors:ratio_rate{window}",
            "expr": f'1 - (sum(rate({BUCKETS}{{le="{le}"}}[{window}])) '
                    f"/ sum(rate({COUNT}[{window}])))",
        })  # fmt: skip
    return records


def format_le(seconds: float) -> str:
    """The `le` label as prometheus_client writes it (0.5 -> "0.5", 1 -> "1.0")."""
    return repr(float(seconds))


def burn_alerts(name: str, slo: str, target: float) -> list[dict[str, Any]]:
    budget = round(1 - target, 6)
    alerts = []
    for severity, pairs in BURNS:
        clauses = [
            f"(scrm:slo_{slo}_errors:ratio_rate{long} > {rate} * {budget} and "
            f"scrm:slo_{slo}_errors:ratio_rate{short} > {rate} * {budget})"
            for long, short, rate in pairs
        ]
        alerts.append({
            "alert": f"{name}BudgetBurn",
            "expr": " or ".join(clauses),
            "labels": {"severity": severity, "slo": slo},
            "annotations": {
                "summary": f"{slo} SLO ({target:.3%}) error budget burning fast ({severity})",
                "description": "Multi-window burn rate over "
                               + ", ".join(f"{r}x ({lg}/{sh})" for lg, sh, r in pairs),
            },
        })  # fmt: skip
    return alerts


def alert(name: str, expr: str, severity: str, summary: str, duration: str) -> dict[str, Any]:
    return {"alert": name, "expr": expr, "for": duration, "labels": {"severity": severity},
            "annotations": {"summary": summary}}  # fmt: skip


def threshold_alerts(settings: Settings) -> list[dict[str, Any]]:
    t = settings.monitoring.thresholds
    d = t.for_duration
    messages = "sum by (tenant) (rate(scrm_business_messages_total[15m]))"
    return [
        alert("ScrmHighErrorRatio",
              f'sum(rate({REQUESTS}{{status=~"5.."}}[5m])) / sum(rate({REQUESTS}[5m])) '
              f"> {t.error_ratio}", "page", f"over {t.error_ratio:.0%} of requests answer 5xx", d),
        alert("ScrmHighLatency",
              f"histogram_quantile(0.95, sum by (le) (rate({BUCKETS}[5m]))) > {t.latency_p95_s}",
              "page", f"gateway p95 latency over {t.latency_p95_s} s", d),
        alert("ScrmGatewayDown", 'up{job="scrm-gateway"} == 0', "page",
              "Prometheus cannot scrape the gateway", "1m"),
        alert("ScrmReplicaRestarts",
              "sum by (deployment) (increase(scrm_replica_starts_total[15m])) "
              f"> {t.replica_restarts}", "ticket",
              f"a deployment restarted replicas over {t.replica_restarts} times in 15 min", "0s"),
        alert("ScrmReplicaHung",
              f"time() - scrm_replica_heartbeat_timestamp_seconds > {t.heartbeat_stale_s:g}",
              "page", "a live replica stopped sampling itself (hung)", "0s"),
        alert("ScrmConsumerLag",
              f"max by (consumer) (scrm_bus_consumer_lag_events) > {t.consumer_lag_events}",
              "ticket", f"a bus consumer is over {t.consumer_lag_events} events behind", d),
        alert("ScrmModelDrift",
              f"max by (model, version) (scrm_model_drift_score) > {t.drift_score}", "ticket",
              f"mean confidence moved over {t.drift_score} from the version's start", d),
        alert("ScrmAccuracyDrop",
              f"min by (model, version) (scrm_model_online_accuracy) < {t.accuracy_min}",
              "ticket", f"online accuracy from feedback under {t.accuracy_min}", d),
        alert("ScrmAutoAnswerDrop",
              f"(sum by (tenant) (rate(scrm_business_auto_answered_total[15m])) / {messages}) "
              f"< {t.auto_answer_min} and {messages} > 0", "ticket",
              f"the bot answers under {t.auto_answer_min:.0%} of messages itself", d),
        alert("ScrmAuthFailureBurst",
              f"sum(rate(scrm_security_auth_failures_total[5m])) > {t.auth_failures_per_s:g}",
              "page", f"over {t.auth_failures_per_s:g} authentication failures per second", d),
        *marketing_alerts(settings),
    ]  # fmt: skip


def marketing_alerts(settings: Settings) -> list[dict[str, Any]]:
    """A campaign whose sends the protective rules mostly refuse (an audience without consent,
    opted out or capped: the marketer's target list is wrong), and a launch that failed. The
    sends side falls back to 0 (`or ... * 0`) so that a campaign refused entirely still fires."""
    t = settings.monitoring.thresholds
    by = "sum by (tenant, campaign)"
    blocked = f"{by} (rate(scrm_marketing_blocked_total[15m]))"
    sends = f"({by} (rate(scrm_marketing_sends_total[15m])) or {blocked} * 0)"
    return [
        alert("ScrmMarketingBlocked",
              f"{blocked} / ({blocked} + {sends}) > {t.marketing_blocked_share} and {blocked} > 0",
              "ticket", f"protective rules refused over {t.marketing_blocked_share:.0%} of a "
              "campaign's sends", t.for_duration),
        alert("ScrmMarketingLaunchFailed",
              'sum(increase(scrm_marketing_launches_total{outcome="failed"}[15m])) > 0',
              "ticket", "a queued campaign launch failed (its status URL says why)", "0s"),
    ]  # fmt: skip


def render_rules(settings: Settings) -> str:
    slo = settings.monitoring.slo
    groups = {
        "groups": [
            {"name": "scrm-slo-records", "rules": slo_records(settings)},
            {"name": "scrm-alerts", "rules": threshold_alerts(settings)
             + burn_alerts("ScrmAvailability", "availability", slo.availability)
             + burn_alerts("ScrmLatency", "latency", slo.latency)},
        ]
    }  # fmt: skip
    header = "# Rendered by `scrm monitor rules` from params.yaml `monitoring:`; do not edit.\n"
    return header + yaml.safe_dump(groups, sort_keys=False, allow_unicode=True, width=100)


def render_prometheus(gateway: str, alertmanager: str, rules: str, interval: str = "15s") -> str:
    host = gateway.split("://", 1)[-1].rstrip("/")
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [rules],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            {"job_name": "scrm-gateway", "metrics_path": "/metrics",
             "static_configs": [{"targets": [host]}]},
        ],
    }  # fmt: skip
    return yaml.safe_dump(config, sort_keys=False)


def render_alertmanager(gateway: str, key_file: str, group_wait: str = "30s",
                        repeat: str = "4h") -> str:  # fmt: skip
    """One route to our webhook (authenticated with an `ops` key read from `key_file`),
    grouped by alert and severity; a page inhibits the ticket of the same alert."""
    config = {
        "route": {
            "receiver": "scrm-ops",
            "group_by": ["alertname", "severity"],
            "group_wait": group_wait,
            "group_interval": group_wait if group_wait != "30s" else "5m",
            "repeat_interval": repeat,
        },
        "receivers": [{
            "name": "scrm-ops",
            "webhook_configs": [{
                "url": gateway.rstrip("/") + "/v1/ops/alerts",
                "send_resolved": True,
                "http_config": {"authorization": {"type": "Bearer",
                                                  "credentials_file": key_file}},
            }],
        }],
        "inhibit_rules": [{
            "source_matchers": ['severity="page"'],
            "target_matchers": ['severity="ticket"'],
            "equal": ["alertname"],
        }],
    }  # fmt: skip
    return yaml.safe_dump(config, sort_keys=False)


def binaries() -> dict[str, str]:
    """Paths of prometheus, alertmanager, promtool; raises with the install hint if missing."""
    found = {
        "prometheus": shutil.which("prometheus"),
        "alertmanager": shutil.which("prometheus-alertmanager") or shutil.which("alertmanager"),
        "promtool": shutil.which("promtool"),
    }
    if missing := [name for name, path in found.items() if not path]:
        raise FileNotFoundError(f"{', '.join(missing)} not installed: run `make monitoring-deps`")
    return found  # type: ignore[return-value]


def start_stack(folder: Path, prometheus_port: int, alertmanager_port: int,
                log: Path | None = None) -> list[subprocess.Popen]:  # fmt: skip
    """Alertmanager, then Prometheus, on loopback, over the configs in `folder`; each in its own
    process group (stop them with `stop_stack`)."""
    paths = binaries()
    out = open(log or folder / "stack.log", "a")  # noqa: SIM115 - the processes keep writing
    am = subprocess.Popen(
        [paths["alertmanager"], f"--config.file={folder / 'alertmanager.yml'}",
         f"--storage.path={folder / 'alertmanager-data'}",
         f"--web.listen-address=127.0.0.1:{alertmanager_port}",
         "--cluster.listen-address=", "--log.level=info"],
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    prom = subprocess.Popen(
        [paths["prometheus"], f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'prometheus-data'}",
         f"--web.listen-address=127.0.0.1:{prometheus_port}"],
        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    return [am, prom]


def stop_stack(processes: list[subprocess.Popen], grace_s: float = 10) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ops_key(settings: Settings, key_file: Path) -> Path:
    """An API key of role `ops` for Alertmanager's webhook, issued once into `key_file`."""
    from privacy.auth import ApiKeyStore, Subject

    if not key_file.is_file():
        store = ApiKeyStore(settings.path(settings.privacy.api_keys_file))
        tenant = settings.privacy.tenancy.default_tenant
        key = store.issue(Subject(id="alertmanager", tenant=tenant, role="ops", method="api_key"))
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.touch(mode=0o600)
        key_file.write_text(key)
    return key_file


def write_configs(settings: Settings, folder: Path, gateway: str, alertmanager_port: int,
                  interval: str = "15s", group_wait: str = "30s") -> Path:  # fmt: skip
    """prometheus.yml, alertmanager.yml and the rules for this gateway, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rules = folder / "scrm.rules.yml"
    rules.write_text(render_rules(settings))
    key = ops_key(settings, folder / "ops.key")
    (folder / "prometheus.yml").write_text(
        render_prometheus(gateway, f"127.0.0.1:{alertmanager_port}", str(rules), interval)
    )
    (folder / "alertmanager.yml").write_text(render_alertmanager(gateway, str(key), group_wait))
    return folder
