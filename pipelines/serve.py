"""Starting, reloading and stopping the Ray Serve application (`scrm serve`).

The application is deployed from serving/config.yaml exactly as `serve run config.yaml` does
(the controller builds it from the file), with this project's paths filled in; that is also
what makes `scrm serve reload` cheap: redeploying the same file with a new `reload_token`
only reconfigures the running replicas. A detached server runs in its own session so that
`stop` can end it, and everything Ray started under it, by signalling the whole process group.
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
from typing import Any

import httpx

from pipelines.chat_client import free_port
from settings import ENV_PREFIX, Settings
from settings.deploy import APP_NAME, APPLICATION_DEPLOYMENTS, read_deploy_config


class ServeError(Exception):
    """The application could not be started or stopped; the message says why."""


def deploy_config(settings: Settings, config_file: Path | None, host: str, port: int) -> dict:
    """serving/config.yaml, with the learning loop's split overlay and this project's root
    (absolute: replicas may run in another working directory, or on another node of a shared
    disk) and the environment the settings loader reads there (SCRM__ overrides, MLflow's
    tracking URI)."""
    from pipelines.serving_split import apply_overlay, read_overlay

    raw = read_deploy_config(config_file or settings.path(settings.serving.config))
    raw = apply_overlay(raw, read_overlay(settings))  # the loop's experiment split, if any
    raw["http_options"] = {**raw.get("http_options", {}), "host": host, "port": port}
    app = raw["applications"][0]
    app["args"] = {**app["args"], "root": str(settings.root)}
    env = app.setdefault("runtime_env", {}).setdefault("env_vars", {})
    env.update(
        {
            "PYTHONPATH": str(settings.root),
            "SCRM_ROOT": str(settings.root),
            "HF_HUB_OFFLINE": "1",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "MLFLOW_TRACKING_URI": settings.tracking_uri,
            **{k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)},
        }
    )
    env.update(monitoring_env(settings))
    return raw


def monitoring_env(settings: Settings) -> dict[str, str]:
    """Every replica writes its metrics to one directory (prometheus_client multiprocess mode;
    set at process start, before the library is imported) and knows the ops robot's URL."""
    watch = settings.monitoring
    env = {"PROMETHEUS_MULTIPROC_DIR": str(settings.path(watch.multiproc_dir))}
    if url := os.environ.get(watch.robot_url_env):
        env[watch.robot_url_env] = url
    return env


def run_dir(settings: Settings) -> Path:
    return settings.path("run")


def ensure_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ServeError(f"{host}:{port} is in use ({error.strerror}); pass --port") from error


def deploy(raw: dict, reload_token: str = "") -> None:
    """Apply the config as `serve run config.yaml` does: the controller builds the app.

    Deploying the same config with only `user_config` changed reconfigures the running
    replicas in place (no restart); `reload_token` is such a change.
    """
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    if reload_token:
        for deployment in raw["applications"][0].get("deployments", []):
            if deployment["name"] not in APPLICATION_DEPLOYMENTS:
                user_config = deployment.setdefault("user_config", {})
                user_config["reload_token"] = reload_token
    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(raw))


def wait_running(timeout_s: float) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        app = serve.status().applications.get(APP_NAME)
        status = app.status if app else None
        if status == "RUNNING":
            return
        if status == "DEPLOY_FAILED":
            problems = [
                f"{name}: {d.message.strip().splitlines()[-1]}"
                for name, d in app.deployments.items()
                if d.message and d.status != "HEALTHY"
            ]
            raise ServeError(
                f"deploying {APP_NAME} failed: " + " | ".join(problems or [app.message])
            )
        time.sleep(0.5)
    raise ServeError(f"{APP_NAME} not running after {timeout_s:.0f}s (status {status})")


def start_ray(address: str | None) -> None:
    """Our own Ray on loopback (no dashboard), or the cluster at `address`."""
    import ray

    ray.init(
        address=address or "local",
        namespace="serve",
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1" if not address else None,
    )


def start_application(raw: dict) -> None:
    """Serve's proxy with the file's HTTP and logging options, then the application."""
    from ray.serve._private import api as serve_api
    from ray.serve.config import ProxyLocation

    serve_api.serve_start(
        http_options=raw["http_options"],
        proxy_location=ProxyLocation(raw.get("proxy_location", "HeadOnly")),
        global_logging_config=raw.get("logging_config"),
    )
    deploy(raw)
    wait_running(600)


def serve_forever(
    settings: Settings,
    host: str,
    port: int,
    address: str | None,
    ready: Callable[[str], None],
    config_file: Path | None = None,
    tls: tuple[Path, Path] | None = None,
) -> None:
    """Run until SIGTERM or Ctrl-C, then shut Serve and Ray down cleanly.

    SIGHUP (`scrm serve reload`) re-reads the config file and makes every model replica
    re-check its registry aliases at once. `tls` (certificate, key): HTTPS with TLS 1.3 only
    on host:port, through a TLS front; Serve itself then listens on a loopback port.
    """
    import ray

    front = tls_front(tls, host, port)
    if front is not None:
        ensure_port_free(host, port)
    serve_host, serve_port = front.upstream if front is not None else (host, port)
    raw = deploy_config(settings, config_file, serve_host, serve_port)
    if not address:
        ensure_port_free(serve_host, serve_port)
    from serving.metrics import reset_multiproc_dir

    reset_multiproc_dir(settings.path(settings.monitoring.multiproc_dir))  # a fresh start
    start_ray(address)
    folder = run_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    reload_requested = threading.Event()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload_requested.set())
    try:
        start_application(raw)
        if front is not None:
            front.start()
        if running_pid(settings) is None:  # foreground: let `scrm serve reload` find us
            (folder / "serve.pid").write_text(str(os.getpid()))
        url = f"{'https' if front else 'http'}://{host}:{port}"
        (folder / "serve.ready").write_text(url)
        ready(url)
        with contextlib.suppress(KeyboardInterrupt):
            while not stop.wait(0.5):
                if reload_requested.is_set():
                    reload_requested.clear()
                    reload_now(settings, config_file, serve_host, serve_port)
        shutdown(address)
    finally:
        if front is not None:
            front.stop()
        ray.shutdown()
        pid_file = folder / "serve.pid"
        if pid_file.is_file() and pid_file.read_text().strip() == str(os.getpid()):
            for name in ("serve.pid", "serve.ready"):
                (folder / name).unlink(missing_ok=True)


def tls_front(tls: tuple[Path, Path] | None, host: str, port: int) -> Any:
    """The TLS 1.3 front for `--tls-cert/--tls-key` (None without them).

    Ray Serve's `http_options` accepts a certificate but cannot set a minimum TLS version, so
    Serve would accept TLS 1.2; the front (privacy/tls.py) pins TLS 1.3 and forwards
    to Serve on a free loopback port. A bad certificate or key fails here, before Ray starts.
    """
    if tls is None:
        return None
    from privacy.tls import TlsFront

    cert_file, key_file = tls
    return TlsFront(cert_file, key_file, host, port, ("127.0.0.1", free_port()))


def reload_now(settings: Settings, config_file: Path | None, host: str, port: int) -> None:
    request = run_dir(settings) / "reload.request"
    token = request.read_text().strip() if request.is_file() else str(time.time())
    try:
        deploy(deploy_config(settings, config_file, host, port), reload_token=token)
        outcome = {"token": token, "ok": True}
    except Exception as error:  # a bad edit of config.yaml must not stop a running server
        outcome = {"token": token, "ok": False, "error": str(error).splitlines()[0]}
    (run_dir(settings) / "reload.done").write_text(json.dumps(outcome))


def shutdown(address: str | None) -> None:
    """Our own Ray: stop Serve. Someone's cluster: remove only our application."""
    from ray import serve

    if address:
        serve.delete(APP_NAME)
    else:
        serve.shutdown()


def request_reload(settings: Settings, timeout_s: float = 120) -> dict:
    """`scrm serve reload`: signal the running server and wait until it has redeployed."""
    pid = running_pid(settings)
    if pid is None:
        raise ServeError("no server is running (no live pid in run/serve.pid); start scrm serve")
    folder = run_dir(settings)
    token = f"{time.time():.6f}"
    (folder / "reload.done").unlink(missing_ok=True)
    (folder / "reload.request").write_text(token)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = folder / "reload.done"
        if done.is_file():
            outcome = json.loads(done.read_text())
            if outcome.get("token") == token:
                if not outcome["ok"]:
                    raise ServeError(f"reload failed: {outcome['error']}")
                return outcome
        time.sleep(0.2)
    raise ServeError(f"server pid {pid} did not confirm the reload within {timeout_s:.0f}s")


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


def start_detached(
    settings: Settings,
    host: str,
    port: int,
    timeout_s: float,
    address: str | None = None,
    config_file: Path | None = None,
    tls: tuple[Path, Path] | None = None,
) -> str:
    """Start `scrm serve` in the background and return its URL once /healthz answers."""
    if pid := running_pid(settings):
        raise ServeError(f"already running as pid {pid}; `scrm serve --stop` first")
    if tls is not None:
        from privacy.tls import tls13_context

        tls13_context(*tls)  # a missing or bad certificate: one line now, not a dead child
    if not address:
        ensure_port_free(host, port)
    folder = run_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "serve.log"
    (folder / "serve.ready").unlink(missing_ok=True)
    command = [sys.executable, "-m", "pipelines.cli", "serve", "--host", host, "--port", str(port)]
    command += ["--address", address] if address else []
    command += ["--config", str(Path(config_file).resolve())] if config_file else []
    if tls is not None:
        command += ["--tls-cert", str(Path(tls[0]).resolve())]
        command += ["--tls-key", str(Path(tls[1]).resolve())]
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
    url = f"{'https' if tls else 'http'}://{host}:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise ServeError(f"server exited with {process.returncode}: " + " | ".join(tail))
        if not (folder / "serve.ready").is_file():
            time.sleep(1)
            continue
        try:
            # our own child on this host: its certificate may name another host (or be
            # self-signed), so the readiness probe alone skips verification
            if httpx.get(f"{url}/healthz", timeout=2, verify=not tls).status_code == 200:
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
    for name in ("serve.pid", "serve.json", "serve.ready"):
        (run_dir(settings) / name).unlink(missing_ok=True)
    if pid is None:
        return None
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:  # a foreground server is not a group leader
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return pid
