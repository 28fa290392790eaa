"""Per-client scan limits over real HTTP (uvicorn on 127.0.0.1; each client connects from its own loopback
address): a client over its scan rate gets 429 with Retry-After while other clients are answered, the
charge is weighted by prompt length, a client's scans in flight are capped, scans never run on the event
loop, and the worker process can be niced and pinned."""

from __future__ import annotations

import functools
import os
import threading
import time

import httpx
import pytest

from safetext.generator import SafeTextGenerator
from safetext.policy import load_policy
from safetext.service import BackgroundServer, create_app
from safetext.service.cli import _cpu_list
from safetext.service.ratelimit import REQUEST_CHARS, RateLimited, ScanLimiter
from tests.test_service import _serve_args
from tests.tiny_pipelines import build_tiny_glyph

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLEAN = 'A red sign that says "hello".'
LONGEST = "a" + " " * 998 + "b"  # the default policy's maximum length, the whitespace shape that was quadratic


@pytest.fixture(scope="module")
def policy():
    return load_policy("default")


@pytest.fixture(scope="module")
def generator(policy):
    return SafeTextGenerator(build_tiny_glyph(), policy=policy)


def client_from(url: str, address: str) -> httpx.Client:
    """An HTTP client whose connections come from ``address`` (a distinct client for the service)."""
    return httpx.Client(base_url=url, headers=AUTH, timeout=60, transport=httpx.HTTPTransport(local_address=address))


def admitted_before_429(client: httpx.Client, prompt: str, limit: int = 200) -> tuple[int, httpx.Response]:
    """Scan ``prompt`` until the first non-200; how many were answered 200, and that answer."""
    for count in range(limit):
        response = client.post("/v1/scan", json={"prompt": prompt})
        if response.status_code != 200:
            return count, response
    raise AssertionError(f"no 429 after {limit} scans")


def test_a_client_over_its_scan_rate_gets_429_while_others_are_served(serve, generator, policy):
    # 200 characters/s and a bucket of 2,000: two maximum-size scans (1,100 each with the request's own 100) empty it.
    url = serve(create_app(generator, policy, token=TOKEN, scan_rate=200.0, scan_burst=2_000))
    with client_from(url, "127.0.0.2") as abuser, client_from(url, "127.0.0.3") as other:
        admitted, refused = admitted_before_429(abuser, LONGEST)
        assert admitted == 2
        assert refused.status_code == 429
        body = refused.json()
        assert body["error"] == "rate_limited"
        assert body["detail"].startswith("this client is over its scan rate of 200 characters per second (--scan-rate); "
                                         "retry after ")
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 2  # 200 characters in debt at 200/s, rounded up
        assert body["detail"].endswith(f"retry after {retry_after} s")
        assert refused.headers["X-Request-ID"]
        # another client is untouched by the first one's debt
        answer = other.post("/v1/scan", json={"prompt": CLEAN})
        assert answer.status_code == 200 and answer.json()["verdict"]["action"] == "allow"
        # the abuser keeps being refused until its bucket refills, before its body is even parsed
        assert abuser.post("/v1/scan", content=b'{"prompt": not json', headers={"Content-Type": "application/json"}
                           ).status_code == 429
        time.sleep(retry_after + 0.1)
        assert abuser.post("/v1/scan", json={"prompt": CLEAN}).status_code == 200
        metrics = abuser.get("/metrics").text
        assert 'safetext_http_responses_total{route="/v1/scan",status="429"} 2.0' in metrics


def test_the_scan_charge_is_weighted_by_prompt_length(serve, generator, policy):
    url = serve(create_app(generator, policy, token=TOKEN, scan_rate=100.0, scan_burst=5_000))
    with client_from(url, "127.0.0.4") as long_prompts, client_from(url, "127.0.0.5") as short_prompts:
        long_admitted, _ = admitted_before_429(long_prompts, LONGEST)
        short_admitted, _ = admitted_before_429(short_prompts, "hello")
    assert long_admitted == 5  # 5,000 / 1,100 -> the fifth goes into debt
    # 5,000 / 105 -> 48 fit, the 48th into debt; refill at 100/s adds about one scan per second of test time
    assert 48 <= short_admitted <= 55


def test_the_client_header_names_the_client_for_the_scan_rate(serve, generator, policy):
    url = serve(create_app(generator, policy, token=TOKEN, scan_rate=100.0, scan_burst=1_000,
                           client_header="X-Forwarded-For"))
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
        first = {"X-Forwarded-For": "203.0.113.7"}
        assert client.post("/v1/scan", json={"prompt": LONGEST}, headers=first).status_code == 200
        assert client.post("/v1/scan", json={"prompt": LONGEST}, headers=first).status_code == 429
        second = {"X-Forwarded-For": "203.0.113.8, 10.0.0.1"}
        assert client.post("/v1/scan", json={"prompt": LONGEST}, headers=second).status_code == 200


class GatedPolicy:
    """The default policy, except that prompts containing "WAIT" block in ``scan`` until ``gate`` is set."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.config = inner, inner.name, inner.config
        self.gate, self.waiting = threading.Event(), threading.Semaphore(0)
        self.threads: list[str] = []

    def scan(self, prompt: str):
        self.threads.append(threading.current_thread().name)
        if "WAIT" in prompt:
            self.waiting.release()
            assert self.gate.wait(30)
        return self.inner.scan(prompt)


def test_scans_in_flight_are_capped_per_client_and_never_block_the_event_loop(serve, generator, policy):
    gated = GatedPolicy(policy)
    url = serve(create_app(generator, gated, token=TOKEN, scan_rate=None, max_scans_per_client=2))
    answers: list[httpx.Response] = []

    def blocked_scan() -> None:
        with client_from(url, "127.0.0.6") as client:
            answers.append(client.post("/v1/scan", json={"prompt": "WAIT " + CLEAN}))

    threads = [threading.Thread(target=blocked_scan) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in threads:
            assert gated.waiting.acquire(timeout=30), "the scans did not start"
        with client_from(url, "127.0.0.6") as same, client_from(url, "127.0.0.7") as other:
            third = same.post("/v1/scan", json={"prompt": CLEAN})
            assert third.status_code == 429 and third.headers["Retry-After"] == "1"
            assert third.json() == {"error": "rate_limited", "detail": "this client already has 2 scan(s) running "
                                    "(--max-scans-per-client); wait for their answers"}
            assert other.post("/v1/scan", json={"prompt": CLEAN}).status_code == 200
            started = time.perf_counter()
            assert other.get("/healthz").status_code == 200  # the event loop is free while two scans block
            assert time.perf_counter() - started < 5.0
    finally:
        gated.gate.set()
        for thread in threads:
            thread.join(30)
    assert [a.status_code for a in answers] == [200, 200]
    assert "safetext-service" not in gated.threads  # the server's (event loop's) thread never scanned
    with client_from(url, "127.0.0.6") as same:  # the places were given back
        assert same.post("/v1/scan", json={"prompt": CLEAN}).status_code == 200


def test_scan_limiter_buckets_refill_and_are_forgotten_when_idle():
    now = [0.0]
    limiter = ScanLimiter(rate=1_000.0, burst=2_000, max_in_flight=None, clock=lambda: now[0])
    limiter.acquire("a", 1_900)  # 2,000 - 2,000 = 0: the next one is refused
    with pytest.raises(RateLimited, match="retry after 1 s") as refused:
        limiter.acquire("a", 0)
    assert refused.value.retry_after == 1 and limiter.refused == 1
    limiter.acquire("b", 999)  # another client has its own bucket
    now[0] = 0.5  # +500
    limiter.acquire("a", 5_000 - REQUEST_CHARS)  # admitted while positive, then 4,500 in debt
    with pytest.raises(RateLimited, match="retry after 5 s"):
        limiter.acquire("a", 0)
    now[0] = 5.1
    limiter.acquire("a", 0)
    disabled = ScanLimiter(rate=None, max_in_flight=None)
    for _ in range(1_000):
        disabled.acquire("a", 1_000)
    assert not disabled._buckets


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"scan_rate": 0.0}, "scan_rate must be a positive number of characters per second"),
    ({"scan_rate": float("inf")}, "scan_rate must be a positive number"),
    ({"scan_burst": 0}, "scan_burst must be an integer >= 1"),
    ({"scan_rate": None, "scan_burst": 100}, "scan_burst needs scan_rate"),
    ({"max_scans_per_client": 0}, "max_scans_per_client must be an integer >= 1"),
    ({"worker_nice": 3}, "worker_nice applies to worker='process' only"),
    ({"worker_cpus": {0}}, "worker_cpus applies to worker='process' only"),
])
def test_create_app_refuses_bad_scan_limits_and_worker_options(generator, policy, kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_app(generator, policy, token=TOKEN, **kwargs)


def test_serve_flags_for_the_scan_limits_and_the_worker():
    args = _serve_args([])
    assert (args.scan_rate, args.scan_burst, args.max_scans_per_client) == (20_000.0, None, 4)
    args = _serve_args(["--scan-rate", "0", "--max-scans-per-client", "0", "--worker-nice", "10", "--worker-cpus", "1-3,5"])
    assert (args.scan_rate, args.max_scans_per_client, args.worker_nice) == (0.0, 0, 10)
    assert args.worker_cpus == frozenset({1, 2, 3, 5})
    with pytest.raises(Exception, match="is not a CPU list"):
        _cpu_list("one")


def tiny_generator() -> SafeTextGenerator:
    """Built in the worker process (module level, so the factory pickles)."""
    return SafeTextGenerator(build_tiny_glyph(), policy="default")


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
def test_the_worker_process_is_niced_and_pinned():
    cpu = min(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match="worker_nice must be an integer from 0 to 19"):
        create_app(generator_factory=tiny_generator, policy="default", token=TOKEN, worker="process", worker_nice=20)
    with pytest.raises(ValueError, match=r"worker_cpus \[4096\] must be a non-empty subset"):
        create_app(generator_factory=tiny_generator, policy="default", token=TOKEN, worker="process", worker_cpus={4096})
    app = create_app(generator_factory=functools.partial(tiny_generator), policy="default", token=TOKEN,
                     worker="process", worker_nice=7, worker_cpus={cpu})
    with BackgroundServer(app, host="127.0.0.1", port=0, startup_timeout=300) as server:
        pid = app.state.pool.generators[0].pid
        assert pid not in (None, os.getpid())
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 7)
        assert os.sched_getaffinity(pid) == {cpu}
        assert app.state.pool.generators[0].threads == 1  # no more torch threads than pinned CPUs
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=120) as client:
            answer = client.post("/v1/generate", json={"prompt": CLEAN, "steps": 2})
            assert answer.status_code == 200 and len(answer.json()["images"]) == 1
