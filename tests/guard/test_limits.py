"""What the memory guard reads once at start: the cgroup limit (v2, v1, "max"), physical
memory, and the option values (sizes, shares)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from sherlock_ai.guard.limits import (
    cgroup_v1_limit,
    cgroup_v2_limit,
    memory_limit,
    physical_memory,
)
from sherlock_ai.guard.sizes import Share, check_memory_budget, check_rss_limit, parse_size


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_memory_max_of_the_process_cgroup(tmp_path):
    write(tmp_path / "proc_cgroup", "0::/kubepods/pod1/container\n")
    write(tmp_path / "root/kubepods/pod1/container/memory.max", "536870912\n")
    write(tmp_path / "root/kubepods/memory.max", "1073741824\n")
    assert cgroup_v2_limit(str(tmp_path / "root"), str(tmp_path / "proc_cgroup")) == 512 << 20


def test_cgroup_v2_max_means_the_nearest_parent_with_a_number(tmp_path):
    write(tmp_path / "proc_cgroup", "0::/a/b\n")
    write(tmp_path / "root/a/b/memory.max", "max\n")
    write(tmp_path / "root/a/memory.max", "268435456\n")
    assert cgroup_v2_limit(str(tmp_path / "root"), str(tmp_path / "proc_cgroup")) == 256 << 20


def test_cgroup_v2_max_all_the_way_is_no_limit(tmp_path):
    write(tmp_path / "proc_cgroup", "0::/a\n")
    write(tmp_path / "root/a/memory.max", "max\n")
    assert cgroup_v2_limit(str(tmp_path / "root"), str(tmp_path / "proc_cgroup")) is None


def test_cgroup_v2_in_a_container_whose_mount_is_its_own_cgroup(tmp_path):
    # /proc/self/cgroup names the host's path; only the mount itself exists in the container.
    write(tmp_path / "proc_cgroup", "0::/system.slice/docker-abc.scope\n")
    write(tmp_path / "root/memory.max", "1048576000\n")
    assert cgroup_v2_limit(str(tmp_path / "root"), str(tmp_path / "proc_cgroup")) == 1048576000


def test_cgroup_v1_memory_limit_in_bytes(tmp_path):
    write(tmp_path / "proc_cgroup",
          "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n")
    write(tmp_path / "root/memory/docker/abc/memory.limit_in_bytes", "805306368\n")
    root, proc = str(tmp_path / "root"), str(tmp_path / "proc_cgroup")
    assert cgroup_v1_limit(root, proc) == 768 << 20
    assert cgroup_v2_limit(root, proc) is None  # no memory.max anywhere


def test_cgroup_v1_unlimited_is_no_limit(tmp_path):
    write(tmp_path / "proc_cgroup", "4:memory:/\n")
    write(tmp_path / "root/memory/memory.limit_in_bytes", "9223372036854771712\n")
    assert cgroup_v1_limit(str(tmp_path / "root"), str(tmp_path / "proc_cgroup")) is None


def test_no_cgroup_falls_back_to_physical_memory(tmp_path):
    found = memory_limit(str(tmp_path / "none"), str(tmp_path / "none"))
    assert found == (physical_memory(), "physical memory")
    assert found.bytes == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_a_cgroup_limit_above_physical_memory_is_not_the_limit(tmp_path):
    write(tmp_path / "proc_cgroup", "0::/a\n")
    write(tmp_path / "root/a/memory.max", str(physical_memory() * 4))
    found = memory_limit(str(tmp_path / "root"), str(tmp_path / "proc_cgroup"))
    assert found.source == "physical memory"


def _by_hand(base: Path, path: str, name: str, limited) -> object:
    parts = [p for p in path.split("/") if p]
    for i in range(len(parts), -1, -1):
        file = base.joinpath(*parts[:i], name)
        if file.exists():
            value = file.read_text().strip()
            if limited(value):
                return int(value)
    return None


def test_this_machines_cgroup_files():
    # The real files of this process's cgroups, walked by hand, give the same limits.
    proc = Path("/proc/self/cgroup")
    if not proc.exists():
        pytest.skip("no /proc/self/cgroup on this platform")
    root = Path("/sys/fs/cgroup")
    v1 = v2 = None
    for line in proc.read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:
            v2 = _by_hand(root, path, "memory.max", lambda v: v.isdigit())
        elif "memory" in controllers.split(","):
            v1 = _by_hand(root / "memory", path, "memory.limit_in_bytes",
                          lambda v: v.isdigit() and int(v) < 1 << 62)
    assert cgroup_v2_limit() == v2
    assert cgroup_v1_limit() == v1
    physical = physical_memory()
    expected = min([x for x in (v2, v1, physical) if x is not None])
    assert memory_limit().bytes == expected


def test_sizes():
    assert parse_size("memory_budget", "50MB") == 50 << 20
    assert parse_size("memory_budget", "1.5 GB") == 3 << 29
    assert parse_size("memory_budget", "512kb") == 512 << 10
    assert parse_size("memory_budget", 4096) == 4096
    assert check_rss_limit("80%") == Share(0.8)
    assert check_rss_limit("800MB") == 800 << 20
    assert dict(check_memory_budget({"/export": "50MB", "POST /a": 10})) == {
        "/export": 50 << 20, "POST /a": 10}


@pytest.mark.parametrize("value, error", [
    ("50 parsecs", "memory_budget must be bytes as an int, or a string such as '50MB'"),
    (0, "memory_budget must be more than 0 bytes"),
    (-5, "memory_budget must be more than 0 bytes"),
    (True, "memory_budget must be bytes"),
    (1.5, "memory_budget must be bytes"),
    ({"export": 1}, "memory_budget keys must be route templates"),
    ({"/export": "lots"}, "memory_budget['/export'] must be bytes"),
])
def test_bad_budgets_say_what_is_accepted(value, error):
    with pytest.raises((TypeError, ValueError), match=re.escape(error)):
        check_memory_budget(value)


@pytest.mark.parametrize("value", ["0%", "120%", "eighty%", "-5%"])
def test_bad_shares_say_what_is_accepted(value):
    with pytest.raises(ValueError, match=r"percentage in \(0%, 100%\]"):
        check_rss_limit(value)


@pytest.mark.parametrize("value", ["lots", 1.5, "80 percent"])
def test_a_bad_rss_limit_says_a_share_is_accepted_too(value):
    with pytest.raises((TypeError, ValueError), match=re.escape(
            "or a share of the memory the process may use such as '80%'")):
        check_rss_limit(value)
