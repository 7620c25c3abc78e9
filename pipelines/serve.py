"""Starting and stopping the Ray Serve application: in the foreground, or detached with a pid file.

A detached server runs in its own session so that `stop` can end it, and everything Ray started
under it, by signalling the whole process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from pipelines.settings import Settings
from serving.config import ServingConfig


class ServeError(Exception):
    """The application could not be started or stopped; the message says why."""


def serving_config(settings: Settings) -> ServingConfig:
    return ServingConfig(
        tracking_uri=settings.tracking_uri,
        intent_model=settings.text.task("intent").registered_model,
        feature_repo=settings.feature_repo,
        online_store=settings.online_store,
        event_log=settings.path(settings.features.event_log),
        max_text_chars=settings.serving.max_text_chars,
        intent_replicas=settings.serving.intent_replicas,
    )


def run_dir(settings: Settings) -> Path:
    return settings.path("run")


def ensure_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ServeError(f"{host}:{port} is in use ({error.strerror}); pass --port") from error


def serve_forever(
    settings: Settings, host: str, port: int, address: str | None, ready: Callable[[str], None]
) -> None:
    """Run until SIGTERM or Ctrl-C, then shut Serve and Ray down cleanly."""
    import ray
    from ray import serve

    from serving.app import build_app

    ensure_port_free(host, port)
    ray.init(
        address=address or "local",
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1" if not address else None,
    )
    try:
        quiet = {"enable_access_log": False}
        serve.start(http_options={"host": host, "port": port}, logging_config=quiet)
        serve.run(build_app(serving_config(settings)), name="scrm", logging_config=quiet)
        ready(f"http://{host}:{port}")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        serve.shutdown()
    finally:
        ray.shutdown()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def running_pid(settings: Settings) -> int | None:
    pid_file = run_dir(settings) / "serve.pid"
    if not pid_file.is_file():
        return None
    pid = int(pid_file.read_text().strip())
    return pid if _alive(pid) else None


def start_detached(settings: Settings, host: str, port: int, timeout_s: float) -> str:
    """Start `scrm serve` in the background and return its URL once /healthz answers."""
    if pid := running_pid(settings):
        raise ServeError(f"already running as pid {pid}; `scrm serve --stop` first")
    ensure_port_free(host, port)
    folder = run_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "serve.log"
    command = [sys.executable, "-m", "pipelines.cli", "serve", "--host", host, "--port", str(port)]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=settings.root,
            env={**os.environ, "SCRM_ROOT": str(settings.root)},
            start_new_session=True,
        )
    (folder / "serve.pid").write_text(str(process.pid))
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise ServeError(f"server exited with {process.returncode}: " + " | ".join(tail))
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                (folder / "serve.json").write_text(json.dumps({"url": url, "pid": process.pid}))
                return url
        except httpx.HTTPError:
            pass
        time.sleep(1)
    stop_detached(settings)
    raise ServeError(f"server did not answer {url}/healthz within {timeout_s:.0f}s; see {log_path}")


def stop_detached(settings: Settings, grace_s: float = 60) -> int | None:
    """SIGTERM the server's process group, SIGKILL what is left after `grace_s`."""
    pid = running_pid(settings)
    for name in ("serve.pid", "serve.json"):
        (run_dir(settings) / name).unlink(missing_ok=True)
    if pid is None:
        return None
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return pid
