"""The bounded cache: a plain dict to read, never more than its limit of entries."""

from sherlock_ai.bounded import BoundedCache


def test_keep_stores_and_returns_the_value():
    cache: BoundedCache[str, int] = BoundedCache(limit=3)
    assert cache.keep("a", 1) == 1
    assert cache.get("a") == 1 and cache.get("b") is None


def test_a_full_cache_is_emptied_before_the_next_key():
    cache: BoundedCache[int, int] = BoundedCache(limit=3)
    sizes = [len(cache) for key in range(10) if cache.keep(key, key) == key]
    assert max(sizes) == 3
    assert dict(cache) == {9: 9}  # 0-2, 3-5, 6-8 filled it; 9 came after the last emptying
