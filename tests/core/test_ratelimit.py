from __future__ import annotations

import uuid

import pytest

from core.errors import RateLimited
from core.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from tests.conftest import REDIS_URL, needs_redis


def _exercise(limiter: RateLimiter) -> None:
    key = f"test:{uuid.uuid4().hex}"
    for _ in range(3):
        limiter.hit(key, 3, 60)
    with pytest.raises(RateLimited) as info:
        limiter.hit(key, 3, 60)
    assert 1 <= info.value.retry_after <= 60
    limiter.hit(f"{key}:other", 3, 60)  # other keys are unaffected


def test_memory_rate_limiter() -> None:
    _exercise(MemoryRateLimiter())


@needs_redis()
def test_redis_rate_limiter_is_shared_between_instances() -> None:
    assert REDIS_URL is not None
    a, b = RedisRateLimiter(REDIS_URL), RedisRateLimiter(REDIS_URL)
    _exercise(a)
    key = f"test:{uuid.uuid4().hex}"
    a.hit(key, 2, 60)
    b.hit(key, 2, 60)
    with pytest.raises(RateLimited):
        a.hit(key, 2, 60)
