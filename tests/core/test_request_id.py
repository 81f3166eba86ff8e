"""Request ids in contextvars."""

from __future__ import annotations

import asyncio
import contextvars
import os
import re
import threading

import pytest

from sherlock_ai import (
    clear_request_id,
    generate_request_id,
    get_request_id,
    is_valid_request_id,
    request_id_context,
    set_request_id,
)


def test_generated_ids_are_16_lowercase_hex_and_unique():
    ids = {generate_request_id() for _ in range(100_000)}
    assert len(ids) == 100_000
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)


def test_set_get_clear():
    assert get_request_id() == ""
    generated = set_request_id()
    assert get_request_id() == generated
    assert set_request_id("nginx-abc.123:4") == "nginx-abc.123:4" == get_request_id()
    clear_request_id()
    assert get_request_id() == ""


def test_context_manager_restores_the_previous_id():
    set_request_id("outer")
    with request_id_context("inner") as rid:
        assert rid == "inner" == get_request_id()
        with request_id_context() as fresh:
            assert get_request_id() == fresh != "inner"
        assert get_request_id() == "inner"
    assert get_request_id() == "outer"


@pytest.mark.parametrize(
    "bad", ["", "a b", "line\nbreak", "x\r\n", "ü", "<script>", "a" * 129, "a;b", "a/b"]
)
def test_invalid_ids_are_refused(bad):
    assert not is_valid_request_id(bad)
    with pytest.raises(ValueError, match="1 to 128 characters"):
        set_request_id(bad)
    assert get_request_id() == ""


def test_valid_ids():
    for good in ("a", "A" * 128, "0f" * 8, "123e4567-e89b-12d3-a456-426614174000", "x.y_z:1"):
        assert is_valid_request_id(good)
    assert not is_valid_request_id(None) and not is_valid_request_id(b"abc")


def test_tasks_inherit_and_do_not_leak_back():
    async def child():
        assert get_request_id() == "parent"
        set_request_id("child")
        return get_request_id()

    async def main():
        set_request_id("parent")
        assert await asyncio.create_task(child()) == "child"
        return get_request_id()

    assert asyncio.run(main()) == "parent"


def test_plain_threads_start_without_an_id_and_copied_contexts_carry_it():
    seen = {}
    set_request_id("main")
    plain = threading.Thread(target=lambda: seen.update(plain=get_request_id()))
    ctx = contextvars.copy_context()
    copied = threading.Thread(target=lambda: seen.update(copied=ctx.run(get_request_id)))
    for t in (plain, copied):
        t.start()
        t.join()
    assert seen == {"plain": "", "copied": "main"}


def test_generated_ids_do_not_follow_the_random_module():
    # Ids are echoed to clients: a Mersenne Twister's outputs would let one predict the next.
    import random

    random.seed(20_260_101)
    first = [generate_request_id() for _ in range(4)]
    random.seed(20_260_101)
    assert [generate_request_id() for _ in range(4)] != first


@pytest.mark.parametrize("marker", ["-", "--", "...", ":", "_", "-._:"])
def test_ids_without_a_letter_or_digit_are_refused(marker):
    assert not is_valid_request_id(marker)
    assert is_valid_request_id(marker + "a") and is_valid_request_id("7" + marker)


@pytest.mark.servers
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_hands_out_its_parents_ids():
    generate_request_id()  # the parent holds ids it has not handed out yet
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent, then exit at once
        try:
            os.write(write_end, " ".join(generate_request_id() for _ in range(300)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = set(pipe.read().decode().split())
    os.waitpid(pid, 0)
    parent = {generate_request_id() for _ in range(300)}
    assert len(child) == 300 and not child & parent
    assert all(is_valid_request_id(i) and len(i) == 16 for i in child | parent)
