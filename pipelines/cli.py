"""`scrm`: every pipeline step as a command; dvc.yaml and MLproject call exactly these.

Heavy libraries (Great Expectations, Feast, MLflow, Ray) are imported inside the commands so
that `scrm --help` answers at once.
"""

from __future__ import annotations

import os

import typer

from privacy.masking import install_log_masking

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "RAY_USAGE_STATS_ENABLED": "0",
    "DVC_NO_ANALYTICS": "1",
}.items():
    os.environ.setdefault(_name, _value)

# Logs are always masked: every record any library writes in a `scrm` process (pipelines, Ray
# workers started from it, MLflow) has its phone/ID/card numbers masked (docs/privacy.md).
install_log_masking()

from pipelines.commands import (  # noqa: E402
    channels,
    config,
    data,
    education,
    events,
    features,
    insight,
    loop,
    marketing,  # noqa: F401  (registers `scrm eval uplift`)
    models,
    monitor,
    privacy,
    serving,
)

app = typer.Typer(
    help="scrm-platform: validate -> features -> tune -> train -> evaluate -> promote -> serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# Top-level commands in pipeline order, then the groups.
app.add_typer(data.root)
app.add_typer(models.root)
app.add_typer(serving.root)
app.add_typer(data.data_app, name="data")
app.add_typer(features.features_app, name="features")
app.add_typer(models.predict_app, name="predict")
app.add_typer(serving.serve_app, name="serve")
app.add_typer(serving.ab_app, name="ab")
app.add_typer(channels.intake_app, name="intake")
app.add_typer(channels.eval_app, name="eval")
app.add_typer(privacy.keys_app, name="keys")
app.add_typer(privacy.customers_app, name="customers")
app.add_typer(config.config_app, name="config")
app.add_typer(events.events_app, name="events")
app.add_typer(events.simulate_app, name="simulate")
app.add_typer(monitor.monitor_app, name="monitor")
app.add_typer(insight.insight_app, name="insight")
app.add_typer(loop.loop_app, name="loop")
app.add_typer(education.edu_app, name="edu")

if __name__ == "__main__":
    app()
