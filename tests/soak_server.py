"""The application the soak drives, as a process of its own (bench/soak.py starts it, reads
its RSS, and the fault tests SIGKILL and restart it over the same stores).

    python -m tests.soak_server ROOT PORT CUSTOMERS

The gateway app of tests/console_server.py (crm/parts.py + crm/api.py over the in-process fakes
of the model and Conversation deployments, embedded stores under ROOT) with the intake worker
running and the dialogue publishing its turns on the embedded bus; channel secrets come from
the environment as in a real gateway (DingTalk and WeCom on when set). Known customers
S-0..S-{CUSTOMERS-1}; one API key per role, written to ROOT/soak-keys.json (issued once, so a
restarted server keeps the keys its clients hold); SCRM_SOAK_INTAKE, a JSON object, overrides
the intake log's settings (lease, backend). Runs until SIGTERM or SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

from tests.console_server import start_console


def soak_customers(count: int) -> tuple[str, ...]:
    return tuple(f"S-{n}" for n in range(count))


def main(root: Path, port: int, customers: int) -> None:
    keys_file = root / "soak-keys.json"
    intake = json.loads(os.environ.get("SCRM_SOAK_INTAKE") or "{}")
    console = start_console(root, soak_customers(customers), record_turns=True, port=port,
                            start_worker=True, intake=intake)  # fmt: skip
    if not keys_file.exists():
        keys_file.write_text(json.dumps(console.keys), encoding="utf-8")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait()
    console.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
