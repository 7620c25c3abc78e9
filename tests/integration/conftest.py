"""Integration fixtures: the tiny-profile pipeline run once per session, one live server on
a free loopback port (stopped by its own pid), the session's MQTT broker and API key."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.channel_setup import channel_port, configure_test_channels, free_port, start_mosquitto
from tests.conftest import BIN, TEST_JWT_SECRET, issue_key, make_workspace, run, small_profile
from tests.robot_sink import RobotSink


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
    run([str(BIN / "dvc"), "repro"], cwd=root, timeout=3600)  # a cap: 7 min quiet, 30 loaded
    return root


def replicas(root: Path, deployment: str, count: int) -> None:
    """Set a deployment's replica count in the workspace's Serve file."""
    path = root / "serving" / "config.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    for entry in raw["applications"][0]["deployments"]:
        if entry["name"] == deployment:
            entry.pop("autoscaling_config", None)
            entry["num_replicas"] = count
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="session")
def ops_robot() -> Iterator[RobotSink]:
    """The ops group robot the gateway posts alerts to (issue 20): a local sink."""
    sink = RobotSink()
    yield sink
    sink.close()


@pytest.fixture(scope="session")
def server(pipeline_workspace: Path, ops_robot: RobotSink) -> Iterator[str]:
    """`scrm serve --detach` on a free loopback port; stopped by its own pid at teardown."""
    port = free_port()
    channels_env = configure_test_channels(pipeline_workspace)  # WeCom, DingTalk, MQTT on
    replicas(pipeline_workspace, "Conversation", 2)  # turns of one chat land on either
    run(
        [str(BIN / "scrm"), "serve", "--detach", "--port", str(port)],
        pipeline_workspace,
        env={
            **channels_env,
            "SCRM_JWT_SECRET": TEST_JWT_SECRET,
            "SCRM_OPS_ROBOT_URL": ops_robot.url,
        },
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
