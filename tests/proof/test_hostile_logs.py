"""``sherlock-ai report`` on a folder of damaged and forged logs: long lines that made its
patterns quadratic, runs of NULs, a compressed file that inflates to hundreds of megabytes
without a newline, tens of thousands of distinct names, far-apart dates, corrupt figures, a
rotation present twice, a link out of the folder. The command runs in a child process under
resource limits (CPU seconds, address space): it must finish inside them, with the right
counts, and its peak RSS (measured by the kernel for the child) stays under a bound."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

pytestmark = pytest.mark.servers

MB = 2**20
# Limits of the child: far above what a linear reader in bounded memory needs, far below
# what a quadratic pattern (hours of CPU on a 1 MB line) or an unbounded read (a gigabyte
# line held whole) needs.
CPU_SECONDS = 60
ADDRESS_SPACE = 1536 * MB
PEAK_RSS = 250 * MB
HEAD = "{day} 10:{minute:02d}:{second:02d} - 4242 - rid - MonitoringLogger - INFO - "


@dataclass
class Expected:
    """What the report must find in the folder."""

    counts: Dict[str, int] = field(default_factory=dict)
    records: int = 0
    bad_lines: int = 0
    long_lines: int = 0
    more_names: int = 0
    left_out: List[str] = field(default_factory=list)

    def memory(self, name: str, n: int, day: str = "2026-12-01") -> str:
        self.counts[name] = self.counts.get(name, 0) + 1
        self.records += 1
        return (HEAD.format(day=day, minute=n // 60 % 60, second=n % 60)
                + f"MEMORY | {name} | SUCCESS | 0.00{n % 7}s | Current: 50.00MB | "
                  f"Change: +{n % 5}.00KB")

    def other(self, message: str, n: int = 0) -> str:
        """A record of ours that is not a measurement (a suspect, a guard line)."""
        self.records += 1
        return HEAD.format(day="2026-12-01", minute=0, second=n % 60) + message


def gzip_of_zeros(path: Path, size: int, tail: bytes) -> None:
    """A gzip file of ``size`` NUL bytes without a newline, then ``tail``: a few hundred KB
    on disk."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(MB)
    with open(path, "wb") as out:
        for _ in range(size // MB):
            out.write(packer.compress(chunk))
        out.write(packer.compress(b"\n" + tail))
        out.write(packer.flush())


def hostile_folder(root: Path, bomb: int, names: int) -> Expected:
    logs = root / "logs"
    logs.mkdir()
    want = Expected()
    good = [want.memory(f"GET /r{n % 3}", n) for n in range(300)]
    lines = list(good)
    # Long lines on which a backtracking leak-site, grown-route or top-site pattern is
    # quadratic, each a readable record under the line cap.
    lines.append(want.other("LEAK SUSPECT | GET /long | +4.00KB/request | " + "a" * 40_000))
    lines.append(want.other("LEAK SUSPECT | GET /sites | +4.00KB/request | "
                            + "a.py:1 +" * 5_000 + " over 10 requests"))
    lines.append(want.other("MEMORY LIMIT | crossed | RSS 900.00MB > 800.00MB | action: log | "
                            "grew most: " + "GET /x +" * 4_000 + " | top sites: "
                            + "b.py:1 " * 4_000))
    lines.append(want.memory("GET /error", 1) + " | Error: " + "e | " * 10_000)
    # A line cut by a crash, then 80 KB of NULs before the next newline; a 1 MB line.
    lines.append(HEAD.format(day="2026-12-01", minute=0, second=0) + "LEAK SUSPECT | GET /cut "
                 "| +4.00KB/request | app.py:1 +4" + "\x00" * 80_000)
    lines.append(HEAD.format(day="2026-12-01", minute=0, second=1)
                 + "LEAK SUSPECT | GET /mb | +4.00KB/request | " + "a.py:1 +" * 131_072)
    want.long_lines += 2
    # Corrupt figures: counted and skipped.
    for corrupt in ("MEMORY | GET /nan | SUCCESS | nans | Current: 1.00MB | Change: +0B",
                    "MEMORY | GET /inf | SUCCESS | 0.001s | Current: " + "9" * 400 + "PB | "
                    "Change: +0B",
                    "MEMORY BUDGET | POST /a | +lots > 1.00MB | RSS change"):
        lines.append(HEAD.format(day="2026-12-01", minute=0, second=2) + corrupt)
        want.bad_lines += 1
    lines.append("0001-01-01 00:00:00 - 4242 - rid - MonitoringLogger - INFO - MEMORY | "
                 "GET /old | SUCCESS | 0.001s | Current: 1.00MB | Change: +0B")
    want.bad_lines += 1
    # Far-apart dates: both real, the page stays small.
    lines.append(want.memory("GET /dates", 3, day="1970-01-02"))
    lines.append(want.memory("GET /dates", 4, day="9999-12-30"))
    text = "\n".join(lines) + "\n"
    (logs / "monitoring.log.3").write_bytes(text.encode() + b"\x00" * (8 * MB))
    want.long_lines += 1
    # The same rotation plain and compressed: read once.
    older = "\n".join(want.memory("GET /older", n) for n in range(200)) + "\n"
    (logs / "monitoring.log.1").write_text(older, encoding="utf-8")
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    (logs / "monitoring.log.1.gz").write_bytes(packer.compress(older.encode()) + packer.flush())
    want.left_out.append("monitoring.log.1.gz: the same rotation as monitoring.log.1")
    # A compressed file inflating to ``bomb`` bytes without a newline, then good lines.
    tail = "\n".join(want.memory("GET /after-bomb", n) for n in range(50)) + "\n"
    gzip_of_zeros(logs / "monitoring.log.2.gz", bomb, tail.encode())
    want.long_lines += 1
    # Many distinct names in the current file (read last): kept up to the bound, the rest
    # counted under one name.
    from sherlock_ai.report.fold import MAX_NAMES

    kept = MAX_NAMES - len(want.counts)
    with open(logs / "monitoring.log", "w", encoding="utf-8") as out:
        for n in range(names):
            out.write(HEAD.format(day="2026-12-01", minute=n // 60 % 60, second=n % 60)
                      + f"MEMORY | GET /n/{n} | SUCCESS | 0.001s | Current: 50.00MB | "
                        "Change: +0B\n")
    want.records += names
    want.more_names = names - kept
    # A link to a file outside the folder: not followed.
    secret = root / "secret.log"
    secret.write_text("2026-12-01 10:00:00 - 1 - rid - PerformanceLogger - INFO - "
                      "PERFORMANCE | GET /secret | SUCCESS | 0.001s\n", encoding="utf-8")
    (logs / "performance.log").symlink_to(secret)
    want.left_out.append("performance.log: a link to a file outside the folder")
    return want


# The report runs in a child of a small launcher that sets the limits and waits for it: the
# peak RSS the kernel counts for a child starts at its parent's RSS when it was forked, and
# this test process grows to hundreds of MB over a run; the launcher stays at a few MB.
LAUNCHER = """
import os, resource, sys
peak_file, cpu_seconds, address_space, *argv = sys.argv[1:]
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_CPU, (int(cpu_seconds), int(cpu_seconds)))
    resource.setrlimit(resource.RLIMIT_AS, (int(address_space), int(address_space)))
    os.execv(sys.executable, [sys.executable, "-m", "sherlock_ai", "report", *argv])
_, status, usage = os.wait4(pid, 0)
with open(peak_file, "w") as out:
    out.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss * 1024}")
"""


def run_limited(argv: List[str], out: Path) -> Tuple[int, int, str]:
    """The report in a child under the limits: its exit status, its peak RSS in bytes, its
    stderr."""
    peak_file = out.with_suffix(".peak")
    with open(out, "wb") as stdout, open(out.with_suffix(".err"), "wb") as stderr:
        subprocess.run([sys.executable, "-c", LAUNCHER, str(peak_file), str(CPU_SECONDS),
                        str(ADDRESS_SPACE), *argv], stdout=stdout, stderr=stderr, check=True)
    status, peak = map(int, peak_file.read_text().split())
    return status, peak, out.with_suffix(".err").read_text(errors="replace")


def check(tmp_path: Path, bomb: int, names: int) -> None:
    want = hostile_folder(tmp_path, bomb, names)
    page = tmp_path / "page.html"
    status, peak, err = run_limited([str(tmp_path / "logs"), "--format", "json", "--html",
                                     str(page)], tmp_path / "report.json")
    assert status == 0, (status, err[-2000:])
    assert peak < PEAK_RSS, f"peak RSS {peak / MB:.0f} MB"
    raw = (tmp_path / "report.json").read_bytes()
    raw.decode("ascii")
    doc = json.loads(raw)
    assert (doc["records"], doc["bad_lines"], doc["long_lines"], doc["more_names"]) == (
        want.records, want.bad_lines, want.long_lines, want.more_names)
    assert doc["left_out"] == want.left_out and doc["foreign_tags"] == 0
    counts = {r["name"]: r["count"] for r in doc["routes"]}
    for name, count in want.counts.items():
        assert counts[name] == count, name
    assert counts["(more names)"] == want.more_names
    assert {s["name"] for s in doc["suspects"]} == {"GET /long", "GET /sites"}
    assert "GET /secret" not in counts
    assert page.stat().st_size < 8 * MB


def test_a_folder_of_damaged_and_forged_logs_is_read_within_bounds(tmp_path):
    check(tmp_path, bomb=256 * MB, names=30_000)


@pytest.mark.slow
def test_a_gigabyte_bomb_and_a_million_names_are_read_within_bounds(tmp_path):
    check(tmp_path, bomb=1024 * MB, names=1_000_000)


CUSTOM = "%(asctime)s | %(levelname)s | %(module)s | %(name)s | %(message)s"


def test_hostile_lines_in_a_given_log_format_are_read_within_bounds(tmp_path):
    # With --log-format, lazy fields between separators are polynomial on lines full of
    # separators and tags; each field must end at the first separator.
    good = ("2026-12-01 10:00:{:02d},123 | INFO | lines | MonitoringLogger | MEMORY | GET /a | "
            "SUCCESS | 0.002s | Current: 50.00MB | Change: +4.00KB")
    hostile = ["MEMORY | " * 6_000, " | " * 20_000 + "MEMORY | x", "a | " * 15_000,
               "2026-12-01 10:00:00 | " * 2_500 + "MEMORY | x"]
    lines = [good.format(n) for n in range(20)] + hostile * 5 + [good.format(20)]
    # One file with a collector's prefix (read strictly), and a folder's monitoring.log.
    (tmp_path / "pod.log").write_text("\n".join("[pod/web] " + line for line in lines)
                                      + "\n", encoding="utf-8")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "monitoring.log").write_text("\n".join(lines) + "\n",
                                                      encoding="utf-8")
    for given in ("pod.log", "logs"):
        status, _, err = run_limited([str(tmp_path / given), "--log-format", CUSTOM,
                                      "--format", "json"], tmp_path / "report.json")
        assert status == 0, (status, err[-2000:])
        doc = json.loads((tmp_path / "report.json").read_bytes())
        assert [(r["name"], r["count"]) for r in doc["routes"]] == [("GET /a", 21)], given
