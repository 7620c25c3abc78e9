"""Shared helpers and fixtures of both suites: throwaway copies of the project, how to run
`scrm` in one, API keys, and the session-end log grep.

tests/unit/ needs no server, no `dvc repro` and no Ray (`make test-fast`); tests/integration/
adds the pipeline run once per session and one live server (its conftest.py). Nothing here
writes to the real project's data/, mlruns/ or run/: every pipeline run happens in a temporary
copy of the sources and raw data, as a fresh clone would have them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

# Suite-wide log grep (issue 9): at session end every log the suite produced is scanned for raw
# phone/ID/card numbers and the run fails on a hit (tests/log_grep.py says what and why).
from tests.log_grep import pytest_configure, pytest_sessionfinish  # noqa: E402, F401

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The live gateway accepts HS256 tokens signed with this (tests only; never a real secret).
TEST_JWT_SECRET = "scrm-test-suite-hs256-secret-0123456789"
COPIED = [
    "dvc.yaml",
    "params.yaml",
    "MLproject",
    "settings",
    "events",
    "features",
    "training",
    "serving",
    "crm",
    "privacy",
    "pipelines",
]


def project_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SCRM_ROOT", "MLFLOW_TRACKING_URI")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update({"HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1", "RAY_USAGE_STATS_ENABLED": "0"})
    return {**env, **extra}


def make_workspace(target: Path, datasets: tuple[str, ...] = ()) -> Path:
    """Copy code, params and raw data (all of it, or just `datasets`) as a fresh clone has them."""
    target.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)
    shutil.copytree(REPO / "data" / "kb", target / "data" / "kb")  # the FAQ the dialogue answers
    raw = REPO / "data" / "raw"
    for folder in raw.iterdir():
        if not datasets or folder.name in datasets:
            shutil.copytree(folder, target / "data" / "raw" / folder.name)
    subprocess.run([BIN / "dvc", "init", "--no-scm", "-q"], cwd=target, check=True)
    return target


def run(
    command: list[str],
    cwd: Path,
    check: bool = True,
    timeout: float = 600,
    env: dict[str, str] | None = None,
):
    result = subprocess.run(
        command,
        cwd=cwd,
        env=project_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "project")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project (params.yaml, no data) as the cwd: for `scrm data add` and its users."""
    root = tmp_path / "project"
    (root / "data" / "raw").mkdir(parents=True)
    shutil.copy2(REPO / "params.yaml", root / "params.yaml")
    monkeypatch.chdir(root)
    monkeypatch.delenv("SCRM_ROOT", raising=False)
    return root


@pytest.fixture
def bank_csv(tmp_path: Path) -> Path:
    """For `scrm data add`: real BANKING77 test rows, under column names no loader knows."""
    frame = pd.read_csv(REPO / "data/raw/banking77/test.csv")
    keep = ["card_arrival", "lost_or_stolen_card", "cancel_transfer", "exchange_rate"]
    frame = frame[frame["category"].isin(keep)].rename(
        columns={"text": "utterance", "category": "intent"}
    )
    path = tmp_path / "my intents.csv"
    frame.to_csv(path, index=False)
    return path


def small_profile(root: Path) -> None:
    """Fewer tuning trials, a short AutoML budget: the suite checks that the steps work and
    learn; `make run` trains for real."""
    params_file = root / "params.yaml"
    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    params["text"]["tune"].update(trials=3, folds=2)
    params["text"]["bert"].update(
        encoder={
            "hidden": 32,
            "layers": 1,
            "heads": 2,
            "intermediate": 64,
            "lstm_hidden": 16,
            "dropout": 0.1,
        },
        # max_minutes is a cap that fails the fit (training/budget.py): room for a busy machine
        train={"epochs": 1, "batch_size": 32, "lr": 0.002, "patience": 1, "max_minutes": 5.0},
        vocab_size=3000,
        max_train_rows=400,
    )
    tiny = params["text"]["bert"]["train"]
    params["text"]["ner"].update(
        train=tiny, baseline_train=tiny, baseline_embedding=32, baseline_lstm_hidden=32,
        max_train_rows=200, max_eval_rows=300,
    )  # fmt: skip
    params["text"]["faq_match"].update(train=tiny, max_train_rows=400, max_eval_rows=400)
    params["text"]["pretrain"].update(
        train=tiny, max_texts=600, vocab_size=3000, epochs_by_corpus={}
    )
    for task in ("churn", "repurchase"):
        params["tabular"]["tasks"][task]["automl"].update(
            time_limit=30, hyperparameters={"GBM": {}, "LR": {}}, importance_time_limit=10
        )
    if "insight" in params:  # relation inference: two seeds, not ten
        params["insight"]["relations"]["seeds"] = [0, 1]
    params_file.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")


def issue_key(root: Path, subject: str, tenant: str, role: str, **attributes) -> str:
    """An API key in the workspace's key file (params privacy.api_keys_file), as
    `scrm keys issue` writes it; the gateway reads the file per request."""
    from privacy.auth import ApiKeyStore, Subject

    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    store = ApiKeyStore(root / params["privacy"]["api_keys_file"])
    return store.issue(Subject(id=subject, tenant=tenant, role=role, method="api_key",
                               **attributes))  # fmt: skip
