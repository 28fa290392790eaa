"""Generations in a worker process, over real HTTP (uvicorn on 127.0.0.1): bit-identity with in-process
generation, a worker killed mid-request, cancellation on disconnect, shutdown without leftover children,
and the per-client fair queue."""

from __future__ import annotations

import base64
import functools
import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch

from safetext.generator import SafeTextGenerator
from safetext.service import BackgroundServer, GenerationPool, Overloaded, ServiceLimits, create_app
from safetext.service.worker import generate_pngs
from tests.tiny_pipelines import build_tiny_glyph

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLEAN = 'A red sign that says "hello".'
TOXIC = 'A blue sign that says "fuck".'
STEP_DELAY = 0.03  # seconds the worker's pipeline sleeps after each step, so long requests can be interrupted


class _Sleepy:
    """A guarded generator whose pipeline sleeps after each step (the output is unchanged)."""

    def __init__(self, inner: SafeTextGenerator, delay: float) -> None:
        self.inner, self.policy, self.pipe, self.delay = inner, inner.policy, inner.pipe, delay

    def __call__(self, **kwargs):
        outer = kwargs.pop("callback_on_step_end", None)
        if "explode" in kwargs["prompt"]:
            raise ValueError("cannot read /srv/secrets/model.bin with key sk-live-123")
        logging.getLogger("tests.worker").warning("generating %d step(s) in pid %d", kwargs["num_inference_steps"],
                                                  os.getpid())

        def callback(pipe, step, timestep, tensors):
            time.sleep(self.delay)
            return outer(pipe, step, timestep, tensors) if outer is not None else {}

        return self.inner(callback_on_step_end=callback, **kwargs)


def sleepy_tiny_generator(delay: float) -> _Sleepy:
    """Built in the worker process (module-level, so the factory pickles)."""
    return _Sleepy(SafeTextGenerator(build_tiny_glyph(), policy="default"), delay)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose; /proc says so on Linux
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def process_server():
    """One service with a process worker for the whole module (starting the worker takes seconds)."""
    app = create_app(
        generator_factory=functools.partial(sleepy_tiny_generator, STEP_DELAY), policy="default", token=TOKEN,
        worker="process", worker_threads=torch.get_num_threads(), limits=ServiceLimits(max_steps=1000, max_compute=10**9),
    )
    server = BackgroundServer(app, host="127.0.0.1", port=0, startup_timeout=300).start()
    server.pids = [app.state.pool.generators[0].pid]  # every worker pid seen, for the shutdown test
    yield server
    if server._server is not None:
        server.stop()


def _worker(server):
    return server.app.state.pool.generators[0]


def _png_bytes(response: httpx.Response) -> list[bytes]:
    return [base64.b64decode(item["png_base64"]) for item in response.json()["images"]]


def test_process_worker_output_is_bit_identical_to_in_process_generation(process_server, caplog):
    worker = _worker(process_server)
    assert worker.pid not in (None, os.getpid()) and worker.threads == torch.get_num_threads()
    local = SafeTextGenerator(build_tiny_glyph(), policy="default")
    with httpx.Client(base_url=process_server.url, headers=AUTH, timeout=120) as client, \
            caplog.at_level(logging.WARNING, "tests.worker"):
        health = client.get("/healthz").json()
        assert health["workers"] == {"mode": "process", "restarts": 0}
        first = {}
        for prompt, action in ((CLEAN, "allow"), (TOXIC, "neutralize")):
            served = first[prompt] = client.post("/v1/generate", json={"prompt": prompt, "seed": 11, "steps": 3, "num_images": 2})
            assert served.status_code == 200, served.text
            pngs, verdict, _ = generate_pngs(local, prompt, 11, {"num_inference_steps": 3, "num_images_per_prompt": 2})
            assert _png_bytes(served) == [png for png, _, _ in pngs]
            assert served.json()["verdict"]["action"] == action == verdict.action.value
            assert served.json()["verdict"]["sanitized_prompt"] == verdict.sanitized_prompt
        other_seed = client.post("/v1/generate", json={"prompt": CLEAN, "seed": 12, "steps": 3})
        assert other_seed.status_code == 200 and _png_bytes(other_seed)[0] != _png_bytes(first[CLEAN])[0]
        too_long = client.post("/v1/generate", json={"prompt": "A sign that says \"" + "x" * 3000 + "\""})
        assert too_long.status_code == 422  # the prompt limit is checked in the HTTP process, before the worker
        metrics = client.get("/metrics").text
    # the worker's log records reach this process's loggers, tagged with the request id
    forwarded = [r for r in caplog.records if r.name == "tests.worker"]
    assert [r.request_id for r in forwarded][:2] == [first[CLEAN].headers["x-request-id"], first[TOXIC].headers["x-request-id"]]
    assert forwarded[0].getMessage() == (f"generating 3 step(s) in pid {worker.pid} "
                                         f"(request {first[CLEAN].headers['x-request-id']})")
    assert 'safetext_requests_total{decision="neutralize"} 1.0' in metrics
    assert 'safetext_generation_seconds_count{guarded="true"} 1.0' in metrics
    assert "safetext_worker_restarts 0.0" in metrics


def test_a_disconnected_client_cancels_the_generation_in_the_worker(process_server):
    url = process_server.url
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):  # 900 steps x 30 ms: 27 s unless cancelled
        httpx.post(url + "/v1/generate", json={"prompt": CLEAN, "steps": 900}, headers=AUTH, timeout=1.5)
    while httpx.get(url + "/healthz").json()["queue"]["running"]:
        assert time.monotonic() - started < 10, "the worker kept generating after its client left"
        time.sleep(0.05)
    # the pool's place is freed only when the worker answers, so the worker itself stopped
    ok = httpx.post(url + "/v1/generate", json={"prompt": CLEAN, "steps": 2}, headers=AUTH, timeout=60)
    assert ok.status_code == 200 and _worker(process_server).restarts == 0


def test_an_exception_in_the_worker_is_a_500_with_an_id_and_its_text_only_in_the_log(process_server, caplog):
    with caplog.at_level(logging.ERROR, "safetext.service"):
        response = httpx.post(process_server.url + "/v1/generate", json={"prompt": "A sign that says explode"},
                              headers=AUTH, timeout=60)
    request_id = response.headers["x-request-id"]
    assert response.status_code == 500
    assert response.json() == {"error": "generation_failed",
                               "detail": f"generation failed (ValueError); see the service log for request {request_id}"}
    assert "sk-live" not in response.text and "secrets" not in response.text
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and "sk-live-123" in str(logged[0].exc_info[1])  # the worker's traceback, in the service log
    assert _worker(process_server).restarts == 0  # an exception is not a crash: the same worker goes on
    ok = httpx.post(process_server.url + "/v1/generate", json={"prompt": CLEAN, "steps": 2}, headers=AUTH, timeout=60)
    assert ok.status_code == 200


def test_a_killed_worker_fails_its_request_with_an_id_and_is_restarted(process_server, caplog):
    worker = _worker(process_server)
    url, pid = process_server.url, worker.pid
    answers: list[httpx.Response] = []
    client = threading.Thread(target=lambda: answers.append(
        httpx.post(url + "/v1/generate", json={"prompt": CLEAN, "steps": 900}, headers=AUTH, timeout=120)))
    with caplog.at_level(logging.ERROR, "safetext.service"):
        client.start()
        deadline = time.monotonic() + 30
        while httpx.get(url + "/healthz").json()["queue"]["running"] == 0:
            assert time.monotonic() < deadline, "the generation never started"
            time.sleep(0.05)
        time.sleep(0.3)
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        client.join(60)
        answered = time.monotonic() - killed
    assert answers and answered < 5, f"the request hung {answered:.1f} s after the worker died"
    response = answers[0]
    request_id = response.headers["x-request-id"]
    assert response.status_code == 500
    assert response.json() == {"error": "generation_failed",
                               "detail": f"generation failed (WorkerCrashed); see the service log for request {request_id}"}
    logged = [r.getMessage() for r in caplog.records if request_id in r.getMessage()]
    assert logged and any("generation failed" in m for m in logged)
    # the next request waits for the new worker and works
    again = httpx.post(url + "/v1/generate", json={"prompt": CLEAN, "steps": 2, "seed": 4}, headers=AUTH, timeout=300)
    assert again.status_code == 200, again.text
    assert worker.pid not in (None, pid) and not _alive(pid)
    process_server.pids.append(worker.pid)
    health = httpx.get(url + "/healthz").json()
    assert health["workers"] == {"mode": "process", "restarts": 1}
    assert health["queue"]["running"] == 0
    assert "safetext_worker_restarts 1.0" in httpx.get(url + "/metrics", headers=AUTH).text


def test_shutdown_leaves_no_worker_process(process_server):
    pids = [pid for pid in process_server.pids if pid is not None]
    assert pids and _alive(pids[-1])
    started = time.monotonic()
    process_server.stop()
    assert time.monotonic() - started < 20
    assert not any(_alive(pid) for pid in pids)
    import multiprocessing

    assert multiprocessing.active_children() == []


def test_process_mode_needs_a_factory_and_a_policy():
    with pytest.raises(ValueError, match="pass generator_factory"):
        create_app(SafeTextGenerator(build_tiny_glyph(), policy="default"), "default", token=TOKEN, worker="process")
    with pytest.raises(ValueError, match="worker must be 'thread' or 'process'"):
        create_app(generator_factory=sleepy_tiny_generator, policy="default", token=TOKEN, worker="fork")
    with pytest.raises(ValueError, match="worker_threads applies to worker='process' only"):
        create_app(generator_factory=sleepy_tiny_generator, policy="default", token=TOKEN, worker_threads=2)
    with pytest.raises(ValueError, match="worker_threads must be an integer >= 1"):
        create_app(generator_factory=sleepy_tiny_generator, policy="default", token=TOKEN, worker="process",
                   worker_threads=0)
    with pytest.raises(ValueError, match="max_waiting_per_client must be an integer >= 1"):
        create_app(generator_factory=sleepy_tiny_generator, policy="default", token=TOKEN, max_waiting_per_client=0)


class _Recording:
    """A generator that waits for ``gate`` on its first call and records the prompts in the order it runs them."""

    def __init__(self, inner: SafeTextGenerator) -> None:
        self.inner, self.policy, self.pipe = inner, inner.policy, inner.pipe
        self.order: list[str] = []
        self.gate, self.entered = threading.Event(), threading.Event()

    def __call__(self, **kwargs):
        self.order.append(kwargs["prompt"])
        self.entered.set()
        assert self.gate.wait(60)
        return self.inner(**kwargs)


def test_waiting_requests_are_served_fairly_per_client(serve):
    recording = _Recording(SafeTextGenerator(build_tiny_glyph(), policy="default"))
    url = serve(create_app(recording, "default", token=TOKEN, max_queue=8, client_header="X-Client",
                           limits=ServiceLimits(max_steps=8, max_compute=10**7)))
    heavy = {"steps": 8, "num_images": 4}  # 4x the compute of a light request below
    light = {"steps": 8, "num_images": 1}
    with ThreadPoolExecutor(8) as pool:
        def post(client: str, prompt: str, extra: dict):
            return pool.submit(httpx.post, url + "/v1/generate", json={"prompt": prompt, **extra},
                               headers={**AUTH, "X-Client": client}, timeout=120)

        futures = [post("abuser", "A sign that says \"heavy 0\"", heavy)]
        assert recording.entered.wait(30)
        for i in range(1, 4):  # the abusive client queues three more maximum-size requests first ...
            futures.append(post("abuser", f"A sign that says \"heavy {i}\"", heavy))
            _wait_waiting(url, i)
        for i in range(2):  # ... then two other clients send one light request each
            futures.append(post(f"user{i}", f"A sign that says \"light {i}\"", light))
            _wait_waiting(url, 4 + i)
        recording.gate.set()
        assert [f.result(timeout=120).status_code for f in futures] == [200] * 6
    # first come, first served would run heavy 1-3 before them; the fair queue lets the other clients in
    # at the running request's virtual time, and the abuser's requests then cost it 4x a light one
    assert [p.split('"')[1] for p in recording.order] == ["heavy 0", "light 0", "light 1", "heavy 1", "heavy 2", "heavy 3"]


def _wait_waiting(url: str, n: int) -> None:
    deadline = time.monotonic() + 30
    while httpx.get(url + "/healthz").json()["queue"]["waiting"] < n:
        assert time.monotonic() < deadline, f"{n} requests never showed up as waiting"
        time.sleep(0.02)


def test_a_client_over_its_waiting_cap_gets_503_and_others_are_admitted(serve):
    recording = _Recording(SafeTextGenerator(build_tiny_glyph(), policy="default"))
    url = serve(create_app(recording, "default", token=TOKEN, max_queue=6, max_waiting_per_client=2,
                           client_header="X-Client"))
    body = {"prompt": CLEAN, "steps": 1}
    with ThreadPoolExecutor(4) as pool:
        send = functools.partial(httpx.post, url + "/v1/generate", json=body, timeout=120)
        running = pool.submit(send, headers={**AUTH, "X-Client": "a"})
        assert recording.entered.wait(30)
        waiting = [pool.submit(send, headers={**AUTH, "X-Client": "a"}) for _ in range(2)]
        _wait_waiting(url, 2)
        refused = send(headers={**AUTH, "X-Client": "a"})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["detail"].startswith("this client already has 2 request(s) waiting (--max-waiting-per-client)")
        other = pool.submit(send, headers={**AUTH, "X-Client": "b"})
        _wait_waiting(url, 3)
        recording.gate.set()
        assert [f.result(timeout=60).status_code for f in (running, *waiting, other)] == [200] * 4


def test_the_fair_queue_interleaves_clients_by_cost():
    import asyncio

    order: list[str] = []
    gate = threading.Event()

    def job(name: str):
        def run(gen):
            order.append(name)
            gate.wait(30)
            return name
        return run

    pool = GenerationPool(["g"], max_queue=10)

    async def scenario():
        first = asyncio.ensure_future(pool.run(job("a0"), client="a", cost=2.0))
        while not order:
            await asyncio.sleep(0.01)
        tasks = [asyncio.ensure_future(pool.run(job(f"a{i}"), client="a", cost=2.0)) for i in range(1, 4)]
        await asyncio.sleep(0.05)
        tasks += [asyncio.ensure_future(pool.run(job(f"b{i}"), client="b", cost=1.0)) for i in range(4)]
        await asyncio.sleep(0.05)
        assert pool.state().waiting == 7
        gate.set()
        return await asyncio.gather(first, *tasks)

    try:
        asyncio.run(scenario())
    finally:
        pool.close()
    # start-time fair queuing: b joins at the virtual time of the running a0 and, costing half as much,
    # gets two turns for each of a's; first come, first served would run a1-a3 before any b
    assert order == ["a0", "b0", "b1", "a1", "b2", "b3", "a2", "a3"]
    with pytest.raises(Overloaded, match="shutting down"):
        pool.admit()


SIGTERM_SCRIPT = """
import functools, sys
from safetext.service import ServiceLimits, create_app
from safetext.service.server import run_server
from tests.test_service_worker import sleepy_tiny_generator

if __name__ == "__main__":
    app = create_app(generator_factory=functools.partial(sleepy_tiny_generator, 0.2), policy="default", token=None,
                     insecure_no_auth=True, worker="process", worker_threads=1, shutdown_timeout=1.0,
                     limits=ServiceLimits(max_steps=1000, max_compute=10**10))
    run_server(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", shutdown_timeout=1.0)
"""


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_sigterm_stops_the_service_and_its_worker_process(tmp_path):
    import socket
    import subprocess
    import sys
    from pathlib import Path

    from tests.test_service_hardening import kill_if_running, sigterm_and_wait, start_long_generation

    repo = Path(__file__).resolve().parents[1]
    script = tmp_path / "serve_process_worker.py"
    script.write_text(SIGTERM_SCRIPT)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(repo)}
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen([sys.executable, str(script), str(port)], cwd=repo, env=env,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, "the server exited during startup"
            try:
                if httpx.get(url + "/healthz", timeout=1).json()["status"] == "ok":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        children = _children(process.pid)
        workers = [pid for pid in children if b"multiprocessing-fork" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 1
        client, answers = start_long_generation(url, client_timeout=120, start_deadline=deadline)
        time.sleep(0.5)
        elapsed, _, _ = sigterm_and_wait(process, timeout=60)
    finally:
        kill_if_running(process)
    client.join(30)
    assert elapsed < 20, f"the service took {elapsed:.1f} s to stop after SIGTERM"
    assert not _alive(workers[0]), "the worker process outlived the service"
    deadline = time.monotonic() + 10  # multiprocessing's resource tracker exits once it sees the service gone
    while any(_alive(pid) for pid in children):
        assert time.monotonic() < deadline, "a child process outlived the service"
        time.sleep(0.1)
    assert answers and not (isinstance(answers[0], httpx.Response) and answers[0].status_code == 200)
    assert "leaked semaphore" not in stderr_path.read_text(), stderr_path.read_text()[-2000:]


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().split(")")[-1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return found
