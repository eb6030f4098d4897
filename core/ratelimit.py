"""Fixed-window rate limits, in process by default or shared through Redis."""

from __future__ import annotations

import threading
import time
from functools import lru_cache
from typing import Protocol

from core.config import get_settings
from core.errors import RateLimited


class RateLimiter(Protocol):
    def hit(self, key: str, limit: int, window_s: int) -> None:
        """Count one attempt; raise RateLimited when over `limit` in the window."""


class MemoryRateLimiter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = {}

    def hit(self, key: str, limit: int, window_s: int) -> None:
        now = time.time()
        window = int(now // window_s)
        with self._lock:
            if len(self._counts) > 100_000:
                self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
            count = self._counts.get((key, window), 0) + 1
            self._counts[(key, window)] = count
        if count > limit:
            raise RateLimited("too many attempts; try again later", retry_after=_retry(now, window_s))


class RedisRateLimiter:
    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url)

    def hit(self, key: str, limit: int, window_s: int) -> None:
        now = time.time()
        bucket = f"hearth:rl:{key}:{int(now // window_s)}"
        pipe = self._redis.pipeline()
        pipe.incr(bucket)
        pipe.expire(bucket, window_s + 1)
        count, _ = pipe.execute()
        if int(count) > limit:
            raise RateLimited("too many attempts; try again later", retry_after=_retry(now, window_s))


def _retry(now: float, window_s: int) -> int:
    return max(1, int(window_s - now % window_s))


@lru_cache(maxsize=1)
def get_rate_limiter() -> RateLimiter:
    url = get_settings().redis_url
    return RedisRateLimiter(url) if url else MemoryRateLimiter()
