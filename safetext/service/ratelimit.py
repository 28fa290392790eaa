"""Per-client limits on ``/v1/scan``: a token bucket of characters and a cap on scans in flight.

A scan costs the service time in proportion to its prompt (the matchers are linear in it) plus a
fixed part per request (HTTP, JSON, the verdict). Each client (the fair queue's key: the remote
address, or the header a trusted proxy sets) has a bucket of ``burst`` characters refilled at
``rate`` characters per second. A scan is admitted while the client's bucket is not empty and is then
charged ``REQUEST_CHARS + len(prompt)``; the bucket may go into debt by that one charge, so a
maximum-size prompt is never refused outright but delays the client's next scans by its cost. A
refused scan is answered 429 at once, with ``Retry-After`` the seconds until the bucket is positive
again, without scanning. A client may also have at most ``max_in_flight`` scans running at once, so
many parallel connections cannot take every thread of the HTTP process.

One client's flood therefore costs the service at most ``rate`` characters of scanning per second
(plus the cheap 429s), whatever its prompts, and other clients' latency stays what it was.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from safetext.errors import SafetextError

#: What a scan costs besides its prompt, in characters: about the HTTP and JSON work of one request.
REQUEST_CHARS = 100
#: Default scan rate per client, in characters per second: ~130 scans/s of a 50-character prompt,
#: ~18 scans/s of the longest (1,000-character) prompt.
DEFAULT_SCAN_RATE = 20_000.0
#: Default cap on one client's scans in flight.
DEFAULT_MAX_SCANS_PER_CLIENT = 4
#: Clients remembered before idle ones (full bucket, nothing in flight) are forgotten.
_PRUNE_AT = 4_096


class RateLimited(SafetextError, RuntimeError):
    """A client is over its scan rate or has too many scans in flight; retry after ``retry_after`` seconds.

    Args:
        message: what was exceeded and how to proceed.
        retry_after: whole seconds to wait (the ``Retry-After`` header).
    """

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _too_many(max_in_flight: int) -> RateLimited:
    return RateLimited(f"this client already has {max_in_flight} scan(s) running (--max-scans-per-client); "
                       "wait for their answers", 1)


def _over_rate(rate: float, tokens: float) -> RateLimited:
    wait = max(1, math.ceil((-tokens + 1) / rate))
    return RateLimited(f"this client is over its scan rate of {rate:,.0f} characters per second (--scan-rate); "
                       f"retry after {wait} s", wait)


@dataclass
class _Bucket:
    tokens: float
    updated: float
    in_flight: int = 0


class ScanLimiter:
    """Token buckets of characters per client, and a cap on each client's scans in flight.

    Args:
        rate: characters per second each client may have scanned on average (None: no rate limit).
        burst: bucket size in characters, what a client may scan at once after a pause (default: two
            seconds of ``rate``).
        max_in_flight: most scans one client may have running at once (None: no cap).
        clock: monotonic seconds (for tests).

    Example:
        >>> limiter = ScanLimiter(rate=1000.0, burst=1000, max_in_flight=2, clock=lambda: 0.0)
        >>> limiter.acquire("a:10.0.0.1", prompt_chars=900)  # 1000 - (100 + 900) = 0 left
        >>> limiter.release("a:10.0.0.1")
        >>> limiter.acquire("a:10.0.0.1", prompt_chars=10)
        Traceback (most recent call last):
        ...
        safetext.service.ratelimit.RateLimited: this client is over its scan rate of 1,000 characters per second (--scan-rate); retry after 1 s
    """

    def __init__(self, rate: float | None = DEFAULT_SCAN_RATE, burst: int | None = None,
                 max_in_flight: int | None = DEFAULT_MAX_SCANS_PER_CLIENT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0
                                 or math.isinf(rate)):
            raise ValueError(f"scan_rate must be a positive number of characters per second (or None), got {rate!r}")
        if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
            raise ValueError(f"scan_burst must be an integer >= 1 (or None), got {burst!r}")
        if burst is not None and rate is None:
            raise ValueError("scan_burst needs scan_rate; set a rate or drop the burst")
        if max_in_flight is not None and (
            isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1
        ):
            raise ValueError(f"max_scans_per_client must be an integer >= 1 (or None), got {max_in_flight!r}")
        self.rate = float(rate) if rate is not None else None
        self.burst = float(burst if burst is not None else 2 * rate) if rate is not None else None
        self.max_in_flight = max_in_flight
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self.refused = 0

    @property
    def enabled(self) -> bool:
        """False when neither a rate nor an in-flight cap is set."""
        return self.rate is not None or self.max_in_flight is not None

    def acquire(self, client: str, prompt_chars: int) -> None:
        """Admit one scan of ``prompt_chars`` characters for ``client`` and charge it, or raise.

        Pair every successful call with :meth:`release` once the scan has ended.

        Raises:
            RateLimited: the client's bucket is empty or it has ``max_in_flight`` scans running.
        """
        if not self.enabled:
            return
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                if len(self._buckets) >= _PRUNE_AT:
                    self._prune(now)
                bucket = self._buckets[client] = _Bucket(self.burst or 0.0, now)
            elif self.rate is not None:
                bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
                bucket.updated = now
            if self.max_in_flight is not None and bucket.in_flight >= self.max_in_flight:
                self.refused += 1
                raise _too_many(self.max_in_flight)
            if self.rate is not None:
                if bucket.tokens <= 0:
                    self.refused += 1
                    raise _over_rate(self.rate, bucket.tokens)
                bucket.tokens -= REQUEST_CHARS + prompt_chars
            bucket.in_flight += 1

    def refusal(self, client: str) -> RateLimited | None:
        """The error :meth:`acquire` would raise for ``client`` now, without charging anything (None: admitted)."""
        if not self.enabled:
            return None
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is None:
                return None
            if self.max_in_flight is not None and bucket.in_flight >= self.max_in_flight:
                self.refused += 1
                return _too_many(self.max_in_flight)
            if self.rate is not None:
                tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
                if tokens <= 0:
                    self.refused += 1
                    return _over_rate(self.rate, tokens)
        return None

    def release(self, client: str) -> None:
        """End a scan admitted by :meth:`acquire`."""
        if not self.enabled:
            return
        with self._lock:
            bucket = self._buckets.get(client)
            if bucket is not None and bucket.in_flight > 0:
                bucket.in_flight -= 1

    def _prune(self, now: float) -> None:
        """Forget clients with nothing in flight whose bucket has refilled (they start full again anyway)."""
        def idle(bucket: _Bucket) -> bool:
            if bucket.in_flight:
                return False
            return self.rate is None or bucket.tokens + (now - bucket.updated) * self.rate >= self.burst

        self._buckets = {client: bucket for client, bucket in self._buckets.items() if not idle(bucket)}
