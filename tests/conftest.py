"""Shared fixtures: throwaway copies of the project, the pipeline run once, one live server.

Nothing here writes to the real project's data/, mlruns/ or run/: every pipeline run happens in
a temporary copy of the sources and raw data, as a fresh clone would have them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.channel_setup import channel_port, configure_test_channels, free_port, start_mosquitto

# Suite-wide log grep (issue 9): at session end every log the suite produced is scanned for raw
# phone/ID/card numbers and the run fails on a hit (tests/log_grep.py says what and why).
from tests.log_grep import pytest_configure, pytest_sessionfinish  # noqa: E402, F401

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The live gateway accepts HS256 tokens signed with this (tests only; never a real secret).
TEST_JWT_SECRET = "scrm-test-suite-hs256-secret-0123456789"
COPIED = [
    "dvc.yaml", "params.yaml", "MLproject", "features", "training", "serving", "crm", "privacy",
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
        train={"epochs": 1, "batch_size": 32, "lr": 0.002, "patience": 1, "max_minutes": 1.0},
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
    params_file.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")


@pytest.fixture(scope="session")
def pipeline_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy on which the whole `dvc repro` has run once (small tuning profile).

    SCRM_TEST_WORKSPACE=/path reuses a copy where `dvc repro` has already run (iterating on
    serving tests without retraining every model).
    """
    if reuse := os.environ.get("SCRM_TEST_WORKSPACE"):
        return Path(reuse)
    root = make_workspace(tmp_path_factory.mktemp("pipeline") / "project")
    small_profile(root)
    run([str(BIN / "dvc"), "repro"], cwd=root, timeout=1800)
    return root


@pytest.fixture(scope="session")
def server(pipeline_workspace: Path) -> Iterator[str]:
    """`scrm serve --detach` on a free loopback port; stopped by its own pid at teardown."""
    port = free_port()
    channels_env = configure_test_channels(pipeline_workspace)  # WeCom, DingTalk, MQTT on
    run(
        [str(BIN / "scrm"), "serve", "--detach", "--port", str(port)],
        pipeline_workspace,
        env={**channels_env, "SCRM_JWT_SECRET": TEST_JWT_SECRET},
    )
    pid = int((pipeline_workspace / "run" / "serve.pid").read_text())
    url = f"http://127.0.0.1:{port}"
    try:
        yield url
    finally:
        run([str(BIN / "scrm"), "serve", "--stop"], pipeline_workspace, check=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.5)
        else:
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def mqtt_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The session's mosquitto on the port the gateway's MQTT bridge is configured for."""
    try:
        process = start_mosquitto(tmp_path_factory.mktemp("mqtt-broker"))
    except FileNotFoundError as error:
        pytest.skip(str(error))
    try:
        yield channel_port("mqtt")
    finally:
        process.terminate()
        process.wait(10)


def issue_key(root: Path, subject: str, tenant: str, role: str, **attributes) -> str:
    """An API key in the workspace's key file (params privacy.api_keys_file), as
    `scrm keys issue` writes it; the gateway reads the file per request."""
    from privacy.auth import ApiKeyStore, Subject

    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    store = ApiKeyStore(root / params["privacy"]["api_keys_file"])
    return store.issue(Subject(id=subject, tenant=tenant, role=role, method="api_key",
                               **attributes))  # fmt: skip


@pytest.fixture(scope="session")
def service_key(pipeline_workspace: Path) -> str:
    """The suite's own key (issued per session): a supervisor of the data sets' tenant with
    full clearance (predict, customer reads and writes, the desk, web chat) and its own rate
    limit, since the suite sends hundreds of requests a second."""
    return issue_key(pipeline_workspace, "test-suite", "default", "supervisor", clearance=3,
                     rate_per_s=10_000.0, burst=10_000)  # fmt: skip


@pytest.fixture(scope="session")
def client(server: str, service_key: str) -> Iterator[httpx.Client]:
    headers = {"X-API-Key": service_key}
    with httpx.Client(base_url=server, timeout=30, headers=headers) as http:
        yield http
