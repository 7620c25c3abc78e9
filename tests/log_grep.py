"""Suite-wide log grep (issue 9): no raw mobile, ID or bank card number in anything logged.

At the end of the test session, every log the suite produced is scanned with
privacy/scan.py; a hit fails the run (exit status 1) and is reported masked, with the
file and line. Scanned:

- the pipeline workspace (the session's `dvc repro` copy, or $SCRM_TEST_WORKSPACE): `run/`
  (serve logs), every `*.log`/`*.out`/`*.err`/`*.txt`/`*.jsonl` under it, the MLflow tracking
  folders' text artifacts (`*.json`, `*.yaml`, `*.csv`, `MLmodel`), and every stored value of
  the gateway's sqlite files (intake log, sessions, desk, transcripts, prediction log, audit,
  profiles, event log) in `data/` and `run/`, write-ahead log included: each cell as stored,
  without decrypting (raw bytes of a whole file would join adjacent columns, e.g. an id ending
  in digits and an ISO date, into digit runs that no row holds);
- the application logs of every Ray instance the suite started (Ray is pointed at a temp dir of
  this session with RAY_TMPDIR): Serve's controller, proxy and replica logs (`logs/serve/`) and
  the workers' stdout/stderr (`logs/worker-*`). Ray's own system logs (raylet, GCS, log monitor,
  state dumps, core-worker stats) are left out: no application text reaches them, and their
  resource counters and hex ids (`68965679110000`, `...b132-01000000-...`) pass the detectors
  by chance, a different one each run;
- `*.log`/`*.out`/`*.err`/`*.jsonl` anywhere under pytest's temp dir.

Not scanned, on purpose: sqlite files of unit tests that open a store *without* a cipher to
test its mechanics (they hold exactly the test inputs the test wrote) and the raw data sets
under `data/raw` (public inputs, not logs). Exempt: a model's `artifacts/code/...` file that is
byte for byte the project's own source file (a model from code ships its source; the numbers
there are the entity registry's documented pattern examples, training/entities/types.yaml, i.e.
test inputs). The scanner's self-tests plant their leaks outside pytest's temp dir. Nothing
else is excluded: a leak is fixed at its source.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import pytest

from privacy.scan import Finding, scan_files, scan_text

LOG_PATTERNS = ("*.log", "*.out", "*.err", "*.jsonl")
TEXT_PATTERNS = (*LOG_PATTERNS, "*.txt", "*.json", "*.yaml", "*.csv", "MLmodel")
MAX_BYTES = 5_000_000
_STATE: dict[str, Path] = {}


REPO = Path(__file__).resolve().parents[1]
CODE = "/artifacts/code/"


def own_source(file: str, roots: list[Path]) -> bool:
    """Is `file` an MLflow code artifact identical to this project's source file?"""
    if CODE not in file:
        return False
    relative = file.split(CODE, 1)[1]
    data = Path(file).read_bytes()
    return any((r / relative).is_file() and (r / relative).read_bytes() == data for r in roots)


def pytest_configure(config: pytest.Config) -> None:
    """Point every Ray instance the suite starts at a session folder (short: socket paths)."""
    if "RAY_TMPDIR" not in os.environ:
        folder = Path(tempfile.mkdtemp(prefix="scrm-ray-", dir="/tmp"))
        os.environ["RAY_TMPDIR"] = str(folder)
        _STATE["ray"] = folder


def workspaces(config: pytest.Config) -> list[Path]:
    found = []
    if reuse := os.environ.get("SCRM_TEST_WORKSPACE"):
        found.append(Path(reuse))
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None:
        base = factory.getbasetemp()
        found += [p for p in base.glob("pipeline*/project") if p.is_dir()]
    return found


def db_findings(folder: Path) -> list[Finding]:
    """Every stored text/blob value of the workspace's sqlite files, as stored (read-only)."""
    findings: list[Finding] = []
    for sub in ("data/events", "data/predictions", "data/privacy", "run"):
        for path in (folder / sub).rglob("*.db"):
            if path.is_file() and path.stat().st_size <= 50 * MAX_BYTES:
                findings += scan_metric_file(path) if metric_file(path) else scan_db(path)
    return findings


def metric_file(path: Path) -> bool:
    """prometheus_client's multiprocess files (monitoring.multiproc_dir): mmap, not sqlite."""
    return path.parent.name == "prometheus" and path.name.split("_")[0] in (
        "counter", "gauge", "histogram", "summary"
    )  # fmt: skip


def scan_metric_file(path: Path) -> list[Finding]:
    """Metric names and label values as stored: none may carry a raw personal number."""
    return scan_text(path.read_bytes().decode("utf-8", "ignore"), str(path))


def scan_db(path: Path) -> list[Finding]:
    findings: list[Finding] = []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "ignore")
                    if isinstance(value, str):
                        findings += scan_text(value, f"{path}:{table}")
    except sqlite3.DatabaseError:  # not a database, or locked past the timeout: say so
        findings.append(Finding(str(path), 0, "unreadable", "not scanned"))
    finally:
        db.close()
    return findings


def mlflow_folders(folder: Path) -> list[Path]:
    return [folder / name for name in ("mlruns", "mlartifacts") if (folder / name).is_dir()]


def scan_session(config: pytest.Config) -> tuple[list[Finding], int]:
    """(findings, files looked at)."""
    targets: list[tuple[Path, tuple[str, ...]]] = []
    for folder in workspaces(config):
        targets += [(folder / "run", TEXT_PATTERNS)]
        targets += [(m, TEXT_PATTERNS) for m in mlflow_folders(folder)]
        targets += [(folder / sub, LOG_PATTERNS) for sub in ("data", "serving", "pipelines")]
    if "ray" in _STATE:
        for session_logs in _STATE["ray"].glob("ray/session_*/logs"):
            targets.append((session_logs / "serve", ("*.log",)))
            targets.append((session_logs, ("worker-*.out", "worker-*.err")))
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None:
        targets.append((factory.getbasetemp(), LOG_PATTERNS))
    findings: list[Finding] = []
    files = 0
    for folder, patterns in targets:
        if folder.is_dir():
            files += sum(1 for p in patterns for _ in folder.rglob(p))
            findings += scan_files([folder], patterns, max_bytes=MAX_BYTES)
    for folder in workspaces(config):
        findings += db_findings(folder)
    unique = {(f.file, f.line, f.kind, f.masked): f for f in findings}
    roots = [REPO, *workspaces(config)]
    kept = [f for f in unique.values() if "/data/raw/" not in f.file]
    return [f for f in kept if not own_source(f.file, roots)], files


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("SCRM_SKIP_LOG_GREP"):
        return
    start = time.perf_counter()
    findings, files = scan_session(session.config)
    seconds = time.perf_counter() - start
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    say = reporter.write_line if reporter else print
    say(f"log grep: {files} log files + workspace sqlite files scanned in {seconds:.1f}s, "
        f"{len(findings)} raw personal numbers")  # fmt: skip
    by_file: dict[str, list[Finding]] = {}
    for finding in findings:
        by_file.setdefault(finding.file, []).append(finding)
    for file, hits in list(by_file.items())[:40]:
        first = hits[0]
        say(f"  {file}:{first.line}: {first.kind} {first.masked} ({len(hits)} in this file)")
    if findings:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        say(f"log grep: Ray logs kept for inspection in {_STATE.get('ray', '-')}")
    elif "ray" in _STATE:
        shutil.rmtree(_STATE["ray"], ignore_errors=True)
