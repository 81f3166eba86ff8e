import subprocess
import sys

import pytest

import sherlock_ai


def test_decorated_function_logs_one_memory_line(records):
    @sherlock_ai.monitor_memory
    def work():
        return 42

    assert work() == 42
    lines = records.messages("MEMORY")
    assert len(lines) == 1
    assert lines[0].startswith(f"MEMORY | {work.__module__}.{work.__qualname__} | SUCCESS | ")


@pytest.mark.servers
def test_import_loads_no_framework_backend_or_deferred_module():
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import sherlock_ai\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert "sherlock_ai.decorators" in loaded  # the probe sees what the import loads
    deferred = {"psutil", "logging.handlers", "json", "datetime", "flask", "starlette",
                "fastapi", "prometheus_client", "opentelemetry", "rich", "asyncio",
                "sherlock_ai.leaks", "sherlock_ai.logs.json_lines", "sherlock_ai.logs.files"}
    assert loaded & deferred == set()
