"""HTTPS with TLS 1.3 only: uvicorn on a loopback port with a self-signed certificate."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest
import uvicorn
from fastapi import FastAPI

from privacy.tls import TlsFront, tls13_context, uvicorn_tls_options
from tests.channel_setup import free_port, tls_files


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    cert_file, key_file = tls_files(tmp_path_factory.mktemp("tls"))
    app = FastAPI()

    @app.get("/healthz")
    def health() -> dict:
        return {"ok": True}

    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", **uvicorn_tls_options(cert_file,
                                                                                    key_file)
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield port, cert_file
    server.should_exit = True
    thread.join(timeout=10)


def client_context(cert_file, maximum: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = maximum
    return context


def handshake(port: int, context: ssl.SSLContext) -> tuple[str, bytes]:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with raw, context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
        return tls.version(), answer


def test_tls13_client_is_served(https_server) -> None:
    port, cert_file = https_server
    version, answer = handshake(port, client_context(cert_file, ssl.TLSVersion.TLSv1_3))
    assert version == "TLSv1.3"
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"ok":true}')


def test_tls12_client_is_refused(https_server) -> None:
    port, cert_file = https_server
    # same CA and hostname as the TLS 1.3 client: only the protocol version differs (the
    # server drops the handshake: "EOF occurred in violation of protocol")
    with pytest.raises(ssl.SSLError):
        handshake(port, client_context(cert_file, ssl.TLSVersion.TLSv1_2))


def test_context_refuses_missing_or_bad_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="certificate file"):
        tls13_context(tmp_path / "none.pem", tmp_path / "none.key")
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match="cannot load TLS certificate/key"):
        tls13_context(tmp_path / "bad.pem", tmp_path / "bad.pem")
    cert_file, key_file = tls_files(tmp_path)
    context = tls13_context(cert_file, key_file)
    assert context.minimum_version == context.maximum_version == ssl.TLSVersion.TLSv1_3


def test_tls_front_pins_tls13_in_front_of_plain_http(tmp_path) -> None:
    """What `scrm serve --tls-cert/--tls-key` runs in front of Ray Serve's proxy."""
    app = FastAPI()

    @app.get("/healthz")
    def health() -> dict:
        return {"ok": True}

    upstream_port = free_port()
    upstream = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=upstream_port, log_level="warning")
    )
    thread = threading.Thread(target=upstream.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not upstream.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    cert_file, key_file = tls_files(tmp_path)
    front = TlsFront(cert_file, key_file, "127.0.0.1", free_port(), ("127.0.0.1", upstream_port))
    front.start()
    try:
        version, answer = handshake(front.port, client_context(cert_file, ssl.TLSVersion.TLSv1_3))
        assert version == "TLSv1.3" and answer.endswith(b'{"ok":true}')
        with pytest.raises(ssl.SSLError):
            handshake(front.port, client_context(cert_file, ssl.TLSVersion.TLSv1_2))
        again = handshake(front.port, client_context(cert_file, ssl.TLSVersion.TLSv1_3))
        assert again[1].startswith(b"HTTP/1.1 200")  # a refused client does not stop it
    finally:
        front.stop()
        upstream.should_exit = True
        thread.join(timeout=10)
    with pytest.raises(OSError):  # stopped: nothing listens any more
        socket.create_connection(("127.0.0.1", front.port), timeout=2).close()
