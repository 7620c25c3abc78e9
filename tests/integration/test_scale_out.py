"""Scale-out paths against real servers on 127.0.0.1; skipped, with the reason, where absent.

MLflow on PostgreSQL: the same train -> evaluate -> register steps, with MLFLOW_TRACKING_URI
pointing at a fresh database on the local server (trust auth, as in CI).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


@pytest.fixture
def postgres_uri() -> Iterator[str]:
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(dbname="postgres", connect_timeout=3, **PG)
    except psycopg2.OperationalError as error:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({str(error).strip()})")
    admin.autocommit = True
    name = f"scrm_test_{uuid.uuid4().hex[:8]}"
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def test_pipeline_steps_track_and_register_on_postgres(
    postgres_uri: str, tmp_path: Path, monkeypatch
) -> None:
    from mlflow import MlflowClient

    from pipelines.text import evaluate_text, promote_text, resolve, train_text
    from pipelines.validate import validate_dataset
    from settings import load_settings

    dataset = "smp2017_ecdt_task1"
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    # The TF-IDF family only: this test is about where runs and versions go, and the BERT
    # family's wall-clock budget makes its result depend on the machine's load.
    params["text"]["bert"]["families"] = ["tfidf"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), "utf-8")
    shutil.copytree(REPO / "data/raw" / dataset, tmp_path / "data/raw" / dataset)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres_uri)
    settings = load_settings(tmp_path)
    assert settings.tracking_uri == postgres_uri

    validate_dataset(settings, dataset)
    target = resolve(settings, "intent")
    trained = train_text(settings, target)
    evaluation = evaluate_text(settings, target)
    registration = promote_text(settings, target)

    client = MlflowClient(postgres_uri)
    assert client.get_run(trained["run_id"]).data.metrics["test_accuracy"] == pytest.approx(
        evaluation["test"]["accuracy"]
    )
    assert registration["alias"] == "champion", registration  # a fresh registry: no rival
    champion = client.get_model_version_by_alias("intent", "champion")
    assert str(champion.version) == registration["version"] == "1"
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # nothing fell back to sqlite
