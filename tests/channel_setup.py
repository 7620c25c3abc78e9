"""Vendor channels for the gateway under test: secrets, endpoints and the MQTT broker.

The gateway reads channel secrets from the environment and endpoints from params.yaml, so
`configure_test_channels` writes the test workspace's `channels:` section and returns the
environment `scrm serve` must start with. WeCom's app-message API and DingTalk's
sessionWebhook are played by one local HTTPS sink (a self-signed certificate the gateway
trusts through SSL_CERT_FILE: the senders keep their https-only and host checks). Ports are
chosen once per test session, by whichever needs them first (the gateway's params or the
fixture that starts the endpoint).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import socket
import subprocess
import time
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pipelines.chat_client import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"  # Debian puts it in sbin
# Test secrets (what a corp's WeCom app and DingTalk robot settings would hold).
WECOM_TOKEN = "QDG6eK"
WECOM_AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"  # 43 characters
WECOM_CORP_ID = "wx5823bf96d3bd56c7"
WECOM_SECRET = "test-app-secret"
WECOM_AGENT_ID = "1000002"
DINGTALK_SECRET = "ding-test-secret-0123456789"
PORTS: dict[str, int] = {}


def channel_port(name: str) -> int:
    """The session's port for `name` (mqtt, vendor), chosen on first use."""
    return PORTS.setdefault(name, free_port())


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def tls_files(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (made once per folder)."""
    cert_file, key_file = folder / "vendor-cert.pem", folder / "vendor-key.pem"
    if cert_file.is_file() and key_file.is_file():
        return cert_file, key_file
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def configure_test_channels(root: Path) -> dict[str, str]:
    """WeCom, DingTalk and MQTT on for the gateway in `root`; returns the server's env."""
    params_file = root / "params.yaml"
    params = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    channels = params.setdefault("channels", {})
    vendor = f"127.0.0.1:{channel_port('vendor')}"
    channels.setdefault("wecom", {})["api_base"] = f"https://{vendor}"
    channels.setdefault("dingtalk", {})["webhook_hosts"] = ["127.0.0.1"]
    channels.setdefault("mqtt", {}).update(
        enabled=True, host="127.0.0.1", port=channel_port("mqtt"), reconnect_s=0.5
    )
    params_file.write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    cert_file, _ = tls_files(root / "run" / "test-channels")
    return {
        "SCRM_WECOM_TOKEN": WECOM_TOKEN,
        "SCRM_WECOM_AES_KEY": WECOM_AES_KEY,
        "SCRM_WECOM_CORP_ID": WECOM_CORP_ID,
        "SCRM_WECOM_SECRET": WECOM_SECRET,
        "SCRM_WECOM_AGENT_ID": WECOM_AGENT_ID,
        "SCRM_DINGTALK_APP_SECRET": DINGTALK_SECRET,
        "SSL_CERT_FILE": str(cert_file),  # the senders trust the local vendor sink
    }


def start_mosquitto(folder: Path) -> subprocess.Popen:
    """The session's broker for the gateway's MQTT bridge (loopback, anonymous, in memory).
    FileNotFoundError when mosquitto is not installed."""
    if not Path(MOSQUITTO).is_file():
        raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {channel_port('mqtt')} 127.0.0.1\nallow_anonymous true\npersistence false\n"
    )
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(channel_port("mqtt"))
    except TimeoutError:
        process.terminate()
        raise
    return process
