"""Run FastAPI's, Starlette's and Flask's own test suites without and with sherlock_ai.

``make peers`` runs this with the system Python (standard library only). For each peer it
downloads the pinned source distribution (which ships the tests), installs the suite's test
needs into its own venv under ``.venv-peers/``, runs the suite once as shipped and then with
sherlock_ai injected by the ``sherlock_peers`` plugin in each mode, compares the pass/fail sets
and checks the MEMORY records. Exit status 1 on any difference not listed in
``peers/allowed.txt``, on an allowed test that fails with ``echo_header=False``, or on a MEMORY
check that does not hold. See docs/peers.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # peers_results, next to this file, also when loaded by path

from peers_results import (  # noqa: E402
    MEMORY_PROBLEMS,
    Outcomes,
    Row,
    allowed,
    allowed_still_pass,
    differences,
    judge_differences,
    memory_checks,
    memory_problems,
    outcomes,
    print_runs,
    say,
)

__all__ = ["MEMORY_PROBLEMS", "memory_problems", "outcomes", "check_suite", "main"]
ROOT = HERE.parent
WORK = HERE / ".work"  # downloads, unpacked sources, logs, results (ignored by git)
VENVS = ROOT / ".venv-peers"
MODES = ("plain", "leak_detection", "trace_malloc")

# The versions `make install` puts in .venv for the fastapi and flask extras. Each suite has
# its own venv because the suites need different pytest versions (Flask 3.1's tests import a
# name pytest 9.1 removed; FastAPI's want pytest >= 9.0, Starlette's >= 9.1.1).
SUITES: Dict[str, Dict[str, object]] = {
    "fastapi": {
        "sdist": "fastapi==0.165.0",
        "tests": ["tests/test_tutorial"],
        "needs": [
            "fastapi==0.165.0", "starlette==1.10.0", "pytest==9.1.1", "pytest-timeout",
            "pytest-xdist", "inline-snapshot", "dirty-equals", "sqlmodel", "pyjwt",
            "pwdlib[argon2]", "pydantic-settings", "pydantic-extra-types", "opentelemetry-sdk",
            "opentelemetry-exporter-otlp-proto-http", "strawberry-graphql", "pyyaml", "orjson",
            "ujson", "a2wsgi", "flask==3.1.3", "python-multipart", "jinja2", "email-validator",
            "httpx>=0.27,<0.29", "httpx2", "uvicorn", "itsdangerous", "anyio[trio]",
        ],
    },
    "starlette": {
        "sdist": "starlette==1.10.0",
        "tests": ["tests"],
        "needs": [
            "starlette[full]==1.10.0", "pytest==9.1.1", "trio", "blockbuster",
            "opentelemetry-sdk", "httpx2[zstd]", "importlib-metadata", "anyio",
        ],
    },
    "flask": {
        "sdist": "flask==3.1.3",
        "tests": ["tests"],
        "needs": [
            "flask==3.1.3", "werkzeug==3.1.9", "pytest==9.0.2", "asgiref", "greenlet",
            "python-dotenv",
        ],
    },
}


def run(cmd: List[str], **kwargs: object) -> None:
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def fetch(suite: str) -> Path:
    """The unpacked source distribution of ``suite``, downloaded once."""
    name, version = str(SUITES[suite]["sdist"]).split("==")
    src = WORK / "src" / f"{name}-{version}"
    if (src / "tests").is_dir():
        return src
    downloads = WORK / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    archive = downloads / f"{name}-{version}.tar.gz"
    if not archive.exists():
        say(f"downloading the source distribution of {name} {version}")
        run([sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:",
             "--no-deps", "--dest", str(downloads), f"{name}=={version}"])
    with tarfile.open(archive) as tar:
        (WORK / "src").mkdir(parents=True, exist_ok=True)
        if sys.version_info >= (3, 12):
            tar.extractall(WORK / "src", filter="data")
        else:
            tar.extractall(WORK / "src")  # noqa: S202 - a registry sdist we pinned
    return src


def venv(suite: str) -> Path:
    """The Python of ``suite``'s venv, with its test needs and sherlock_ai (editable)."""
    where = VENVS / suite
    python = where / "bin" / "python"
    wanted = "\n".join(map(str, SUITES[suite]["needs"]))  # type: ignore[call-overload]
    stamp = where / ".installed"
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    say(f"installing the test needs of {suite} into {where.relative_to(ROOT)}")
    if not python.exists():
        run([sys.executable, "-m", "venv", str(where)])
    run([str(python), "-m", "pip", "install", "--quiet", "-e", str(ROOT),
         *wanted.splitlines()])
    stamp.write_text(wanted)
    return python


def pytest_run(suite: str, python: Path, src: Path, label: str, mode: Optional[str],
               echo: bool = True, tests: Optional[List[str]] = None
               ) -> Tuple[Outcomes, Optional[dict], float]:
    """Run the suite (or ``tests``) once; its outcomes, the plugin's summary, the seconds."""
    out = WORK / "results" / suite
    out.mkdir(parents=True, exist_ok=True)
    junit, summary, log = out / f"{label}.xml", out / f"{label}.json", out / f"{label}.log"
    for stale in (junit, summary):
        stale.unlink(missing_ok=True)
    cmd = [str(python), "-m", "pytest", *(tests or SUITES[suite]["tests"]),  # type: ignore[misc]
           "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", "-o", "junit_family=xunit1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHERLOCK_PEERS_")}
    if mode is not None:
        cmd += ["-p", "sherlock_peers"]
        env.update(PYTHONPATH=str(HERE), SHERLOCK_PEERS_MODE=mode,
                   SHERLOCK_PEERS_ECHO="1" if echo else "0", SHERLOCK_PEERS_OUT=str(summary))
    say(f"  {suite}: {label} ...")
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as f:
        subprocess.run(cmd, cwd=src, env=env, stdout=f, stderr=subprocess.STDOUT, check=False)
    took = time.monotonic() - started
    found = outcomes(junit)
    if not found:
        say(f"    no test results: see {log.relative_to(ROOT)}")
    data = json.loads(summary.read_text()) if summary.exists() else None
    return found, data, took


def check_suite(suite: str, modes: List[str], rules: Dict[Tuple[str, str], str]) -> bool:
    """Run ``suite`` as shipped and injected in ``modes``; print the comparison; True if clean."""
    src, python = fetch(suite), venv(suite)
    say(f"\n== {suite} ({SUITES[suite]['sdist']}, {' '.join(SUITES[suite]['tests'])}) ==")
    base, _, base_time = pytest_run(suite, python, src, "baseline", None)
    rows: List[Row] = [("baseline", base, None, base_time)]
    diffs: Dict[str, Dict[str, Tuple[str, str, str]]] = {}
    found_in_order: Dict[str, List[str]] = {}
    for mode in modes:
        found, data, took = pytest_run(suite, python, src, mode, mode)
        rows.append((mode, found, data, took))
        found_in_order[mode] = list(found)
        diffs[mode] = differences(base, found)
    listed = sorted(t for s, t in rules if s == suite)
    differing = sorted({t for d in diffs.values() for t in d})
    echo_off: Outcomes = {}
    echo_time = 0.0
    if listed or differing:
        tests = sorted(set(listed) | set(differing))
        echo_off, _, echo_time = pytest_run(suite, python, src, "plain-echo-off", "plain",
                                            echo=False, tests=tests)
    print_runs(suite, rows, echo_off, echo_time)
    clean = bool(base) & judge_differences(suite, diffs, found_in_order, rules, echo_off)
    (WORK / "results" / suite / "differences.json").write_text(json.dumps(
        {m: {t: list(v) for t, v in d.items()} for m, d in diffs.items()}, indent=1))
    clean &= allowed_still_pass(suite, listed, echo_off)
    clean &= memory_checks(suite, rows[1:])
    return clean


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", action="append", choices=sorted(SUITES),
                        help="run only this suite (repeatable); default all")
    parser.add_argument("--mode", action="append", choices=MODES,
                        help="run only this injected mode (repeatable); default all")
    args = parser.parse_args(argv)
    rules = allowed()
    started = time.monotonic()
    verdicts = {s: check_suite(s, args.mode or list(MODES), rules)
                for s in (args.suite or list(SUITES))}
    say(f"\npeers: {time.monotonic() - started:.0f}s in all; "
        + ", ".join(f"{s} {'clean' if ok else 'UNEXPLAINED DIFFERENCES'}"
                    for s, ok in verdicts.items()))
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
