"""TLS 1.3 only, for uvicorn (`scrm serve --tls-cert/--tls-key`).

uvicorn's own `ssl_version` cannot express "at least 1.3"; its `ssl_context_factory` hook can
hand it a context built here, whose minimum and maximum are both TLS 1.3, so a TLS 1.2 client
fails the handshake.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any


def tls13_context(
    cert_file: Path | str, key_file: Path | str, password: str | None = None
) -> ssl.SSLContext:
    """A server context that speaks TLS 1.3 and nothing older."""
    for label, path in (("certificate", cert_file), ("key", key_file)):
        if not Path(path).is_file():
            raise FileNotFoundError(f"TLS {label} file {path} does not exist")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.options |= ssl.OP_NO_COMPRESSION
    try:
        context.load_cert_chain(str(cert_file), str(key_file), password)
    except ssl.SSLError as error:
        raise ValueError(f"cannot load TLS certificate/key: {error.reason or error}") from None
    return context


def uvicorn_tls_options(cert_file: Path | str, key_file: Path | str) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config`/`uvicorn.run` that serve HTTPS with TLS 1.3 only."""
    context = tls13_context(cert_file, key_file)
    return {
        "ssl_certfile": str(cert_file),
        "ssl_keyfile": str(key_file),
        "ssl_context_factory": lambda _config, _default: context,
    }
