"""The cluster path: `scrm serve --address` deploys onto a Ray cluster started separately.

The cluster is a real `ray start --head` in its own process group, temp dir and ports, so it
never touches another Ray on this machine; it is stopped by its own pids (never `ray stop`,
which ends every Ray process of the user). Only the intent model is deployed, to keep it light.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from tests.channel_setup import free_port
from tests.conftest import BIN, project_env

LOCAL_ONLY = {"RAY_AUTH_MODE": "disabled"}  # a loopback-only test cluster (STACK-NOTES)


def stop_group(process: subprocess.Popen, grace_s: float = 20) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def kill_leftovers(marker: str) -> None:
    """Raylet, GCS and workers that outlived their group: only those naming our temp dir."""
    for process in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(marker in part for part in process.info["cmdline"] or ()):
                process.kill()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[tuple[str, Path]]:
    """A head node on free loopback ports; yields its GCS address and temp dir."""
    temp = tempfile.mkdtemp(prefix="scrm-ray-", dir="/tmp")  # short: Ray's socket paths
    port = free_port()
    ports = {
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--ray-client-server-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
    }
    command = [
        str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
        "--port", str(port), "--temp-dir", temp, "--num-cpus", "2",
        "--include-dashboard", "false", "--disable-usage-stats",
        "--min-worker-port", "0", "--max-worker-port", "0",
    ]  # fmt: skip
    for option, value in ports.items():
        command += [option, str(value)]
    head = subprocess.Popen(
        command,
        env=project_env(**LOCAL_ONLY, SCRM__SERVING__ONLY="[intent]"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not list(Path(temp).glob("session_*/sockets/raylet*")):
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start failed: {head.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", Path(temp)
    finally:
        stop_group(head)
        kill_leftovers(temp)
        shutil.rmtree(temp, ignore_errors=True)


def intent_only_config(root: Path, target: Path) -> Path:
    raw = yaml.safe_load((root / "serving/config.yaml").read_text(encoding="utf-8"))
    app = raw["applications"][0]
    keep = ("Gateway", "Conversation", "intent")
    app["deployments"] = [d for d in app["deployments"] if d["name"] in keep]
    target.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return target


def test_serve_deploys_to_an_existing_cluster(
    ray_cluster, pipeline_workspace, tmp_path, service_key
):
    key = {"X-API-Key": service_key}
    address, cluster_dir = ray_cluster
    port = free_port()
    config = intent_only_config(pipeline_workspace, tmp_path / "intent_only.yaml")
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [str(BIN / "scrm"), "serve", "--address", address, "--port", str(port),
         "--config", str(config)],
        cwd=pipeline_workspace,
        env=project_env(**LOCAL_ONLY, SCRM__SERVING__ONLY="[intent]"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        ready = None
        while time.monotonic() < deadline and server.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(f"{url}/readyz", timeout=5)
                if ready.status_code == 200:
                    break
            time.sleep(1)
        assert ready is not None and ready.status_code == 200, (tmp_path / "serve.log").read_text()
        assert set(ready.json()["models"]) == {"intent"}
        answer = httpx.post(
            f"{url}/v1/intent", json={"text": "明天北京天气怎么样"}, headers=key, timeout=30
        )
        assert answer.status_code == 200 and answer.json()["top_label"] == "weather"
        # Serve's controller runs inside that cluster (its logs are in the cluster's dir).
        assert list(cluster_dir.glob("session_*/logs/serve/controller_*.log"))
    finally:
        stop_group(server, grace_s=60)
        log.close()
    # The app is removed from the cluster when `scrm serve` stops; the cluster lives on.
    with pytest.raises(httpx.HTTPError):
        gone = httpx.post(f"{url}/v1/intent", json={"text": "x"}, headers=key, timeout=5)
        gone.raise_for_status()
