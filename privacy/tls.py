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


class TlsFront:
    """HTTPS restricted to TLS 1.3 on `host:port`, in front of a plain-HTTP upstream.

    Ray Serve's proxy takes a certificate (`http_options.ssl_certfile/ssl_keyfile`) but hands
    uvicorn no SSL context or minimum version, so it would also speak TLS 1.2. `scrm serve
    --tls-cert/--tls-key` therefore binds Serve to a loopback port and runs this front: it
    terminates TLS 1.3 and pipes the decrypted bytes both ways (HTTP/1.1, keep-alive and
    WebSockets alike, no parsing). It runs its own event loop in a daemon thread.
    """

    def __init__(
        self,
        cert_file: Path | str,
        key_file: Path | str,
        host: str,
        port: int,
        upstream: tuple[str, int],
    ) -> None:
        self.context = tls13_context(cert_file, key_file)
        self.host, self.port, self.upstream = host, port, upstream
        self.loop: Any = None
        self.server: Any = None
        self.thread: Any = None

    def start(self, timeout_s: float = 10.0) -> None:
        import asyncio
        import threading

        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            self.loop.set_exception_handler(quiet_handshake_errors)
            try:
                self.server = self.loop.run_until_complete(
                    asyncio.start_server(self._client, self.host, self.port, ssl=self.context)
                )
            except OSError as error:
                failure.append(error)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()
            self.loop.close()

        self.thread = threading.Thread(target=run, name="tls-front", daemon=True)
        self.thread.start()
        ready.wait(timeout_s)
        if failure:
            raise OSError(f"TLS front cannot bind {self.host}:{self.port}: {failure[0]}")

    def stop(self) -> None:
        if self.loop is None or self.server is None:
            return

        async def close() -> None:
            import asyncio

            self.server.close()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in pending:  # connections still open: end them, then stop
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self.loop.stop()

        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(close()))
        self.thread.join(timeout=10)

    async def _client(self, reader: Any, writer: Any) -> None:
        import asyncio

        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            for stream in (writer, up_writer):
                stream.close()


async def pipe(source: Any, target: Any) -> None:
    """Copy until EOF, then pass the EOF on (a TLS stream cannot half-close: close it)."""
    import contextlib

    try:
        while data := await source.read(65536):
            target.write(data)
            await target.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if target.can_write_eof():
                target.write_eof()
            else:
                target.close()


def quiet_handshake_errors(loop: Any, context: dict[str, Any]) -> None:
    """A refused TLS 1.2 client is routine, not an error worth a traceback."""
    if isinstance(context.get("exception"), ssl.SSLError | ConnectionError):
        return
    loop.default_exception_handler(context)
