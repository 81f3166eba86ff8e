import sherlock_ai


def test_decorated_function_logs_one_memory_line(records):
    @sherlock_ai.monitor_memory
    def work():
        return 42

    assert work() == 42
    lines = records.messages("MEMORY")
    assert len(lines) == 1
    assert lines[0].startswith(f"MEMORY | {work.__module__}.{work.__qualname__} | SUCCESS | ")
