"""@monitor_memory, @log_performance and @monitor_resources on every kind of function."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re

import pytest

from sherlock_ai import log_performance, monitor_memory, monitor_resources

LINE = re.compile(
    r"MEMORY \| (?P<name>\S+) \| (?P<status>SUCCESS|ERROR) \| \d+\.\d{3}s"
    r" \| Current: -?\d+\.\d\dP?[KMGT]?B \| Change: [+-]\d+\.\d\d[KMGTP]?B"
    r"(?P<traced> \| Traced: -?\d+\.\d\d[KMGTP]?B \(Peak: -?\d+\.\d\d[KMGTP]?B\))?"
    r"(?P<tail>.*)$"
)


def name_of(func) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def test_bare_decorator_logs_the_spec_line_with_traced_part(records):
    @monitor_memory
    def work(n):
        return sum(range(n))

    assert work(10) == 45
    (line,) = records.messages("MEMORY")
    match = LINE.match(line)
    assert match, line
    assert match["name"] == name_of(work)
    assert match["status"] == "SUCCESS"
    assert match["traced"], "trace_malloc defaults to True"
    assert records.records[0].levelno == logging.INFO


def test_without_tracing_the_traced_part_is_absent(records):
    @monitor_memory(trace_malloc=False, log_level="DEBUG")
    def work():
        return "ok"

    assert work() == "ok"
    (line,) = records.messages("MEMORY")
    assert LINE.match(line)["traced"] is None
    assert records.records[0].levelno == logging.DEBUG


def test_wrapper_keeps_name_doc_and_signature():
    def original(a: int, b: str = "x", *rest, key: float = 1.0, **extra) -> str:
        """Docs."""
        return b

    for deco in (monitor_memory, log_performance, monitor_resources,
                 monitor_memory(trace_malloc=False)):
        wrapped = deco(original)
        assert wrapped.__name__ == "original" and wrapped.__doc__ == "Docs."
        assert inspect.signature(wrapped) == inspect.signature(original)


def test_async_function_stays_a_coroutine_function_and_is_measured(records):
    @monitor_memory(trace_malloc=False)
    async def fetch(x):
        await asyncio.sleep(0)
        return x * 2

    assert inspect.iscoroutinefunction(fetch)
    assert asyncio.run(fetch(21)) == 42
    (line,) = records.messages("MEMORY")
    assert LINE.match(line)["name"] == name_of(fetch)


def test_generator_is_measured_from_first_step_to_exhaustion_and_send_works(records):
    @monitor_memory
    def echo():
        received = yield "ready"
        while received is not None:
            received = yield received.upper()

    gen = echo()
    assert inspect.isgenerator(gen)
    assert records.messages("MEMORY") == []  # nothing runs before the first step
    assert next(gen) == "ready"
    assert gen.send("a") == "A"
    with pytest.raises(StopIteration):
        gen.send(None)
    (line,) = records.messages("MEMORY")
    assert LINE.match(line)["status"] == "SUCCESS"


def test_generator_closed_early_is_a_success_and_error_inside_is_an_error(records):
    @monitor_memory(trace_malloc=False)
    def numbers():
        yield 1
        yield 2
        raise ValueError("broken")

    gen = numbers()
    next(gen)
    gen.close()
    assert LINE.match(records.messages("MEMORY")[0])["status"] == "SUCCESS"
    with pytest.raises(ValueError, match="broken"):
        list(numbers())
    assert LINE.match(records.messages("MEMORY")[1])["status"] == "ERROR"


def test_async_generator_forwards_asend_athrow_and_aclose(records):
    @monitor_memory(trace_malloc=False)
    async def agen():
        try:
            got = yield 1
            yield got * 10
            yield 3
        except KeyError:
            yield "caught"

    async def main():
        g = agen()
        assert inspect.isasyncgen(g)
        assert await g.__anext__() == 1
        assert await g.asend(5) == 50
        assert await g.athrow(KeyError("k")) == "caught"
        await g.aclose()
        # Plain iteration sends None into `got * 10`: a TypeError inside the generator.
        with pytest.raises(TypeError):
            [x async for x in agen()]

    asyncio.run(main())
    statuses = [LINE.match(m)["status"] for m in records.messages("MEMORY")]
    assert statuses == ["SUCCESS", "ERROR"]


def test_exception_is_reraised_unchanged_and_logged_as_error(records):
    boom = RuntimeError("disk on fire\nFAKE LINE")

    @monitor_memory(trace_malloc=False)
    def fail():
        raise boom

    with pytest.raises(RuntimeError) as caught:
        fail()
    assert caught.value is boom
    (line,) = records.messages("MEMORY")
    assert "\n" not in line
    assert line.endswith(" | Error: RuntimeError: disk on fire\\x0aFAKE LINE")
    assert records.records[0].levelno == logging.ERROR
    assert records.records[0].sherlock.attributes["error_type"] == "RuntimeError"


def test_min_duration_suppresses_fast_successes_but_never_errors(records):
    @monitor_memory(min_duration=60.0)
    def fast(fail=False):
        if fail:
            raise KeyError("x")
        return 1

    assert fast() == 1
    assert records.messages("MEMORY") == []
    with pytest.raises(KeyError):
        fast(fail=True)
    assert len(records.messages("MEMORY")) == 1


def test_slow_call_over_min_duration_is_logged(records):
    import time

    @monitor_memory(min_duration=0.01, trace_malloc=False)
    def slow():
        time.sleep(0.02)

    slow()
    assert len(records.messages("MEMORY")) == 1


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"min_duration": -0.1}, ValueError),
        ({"log_level": "LOUD"}, ValueError),
        ({"log_level": None}, ValueError),
        ({"trace_malloc": 1}, TypeError),
    ],
)
def test_wrong_parameters_fail_at_decoration_time(kwargs, error):
    calls = []
    with pytest.raises(error):
        monitor_memory(**kwargs)(lambda: calls.append(1))
    assert calls == []


def test_decorating_a_non_callable_is_refused():
    with pytest.raises(TypeError, match="callable"):
        monitor_memory(42)
    with pytest.raises(TypeError, match="callable"):
        log_performance()("not a function")


def test_log_performance_line_and_args_are_off_by_default(records):
    @log_performance
    def login(user, password):
        return True

    login("alice", password="hunter2")
    (line,) = records.messages("PERFORMANCE")
    assert re.fullmatch(rf"PERFORMANCE \| {re.escape(name_of(login))} \| SUCCESS \| \d+\.\d{{3}}s",
                        line)
    assert "hunter2" not in line
    assert records.records[0].name == "PerformanceLogger"


def test_include_args_shortens_each_value(records):
    @log_performance(include_args=True)
    def store(blob, key=None):
        return len(blob)

    store("A" * 10_000, key="k")
    (line,) = records.messages("PERFORMANCE")
    assert "Args: 'AAAA" in line and "key='k'" in line
    assert len(line) < 400


def test_stacked_decorators_log_both(records):
    @log_performance
    @monitor_memory(trace_malloc=True)
    def both():
        return [0] * 1000

    assert len(both()) == 1000
    assert len(records.messages("PERFORMANCE")) == 1
    assert len(records.messages("MEMORY")) == 1


def test_the_error_text_names_the_exception_type(records):
    @monitor_memory(trace_malloc=False)
    def lookup():
        return {}["missing"]

    @monitor_memory(trace_malloc=False)
    def silent():
        raise ValueError()

    for fail, exc_type in ((lookup, KeyError), (silent, ValueError)):
        with pytest.raises(exc_type):
            fail()
    assert [line.split(" | Error: ")[1] for line in records.messages("MEMORY")] == [
        "KeyError: 'missing'", "ValueError"]
