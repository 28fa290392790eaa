"""The HTTP service against abusive clients, over real HTTP (uvicorn on 127.0.0.1): limits derived from the
model, the compute budget, cancellation on disconnect and on shutdown, no internal text in answers,
and every error in the ``{error, detail}`` format."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch

from safetext.generator import SafeTextGenerator
from safetext.policy import load_policy
from safetext.service import ServiceLimits, create_app
from safetext.service.admission import Cancelled
from safetext.service.limits import default_steps, native_size
from tests.tiny_pipelines import TINY_BUILDERS, build_tiny_glyph

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLEAN = 'A red sign that says "hello".'
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_glyph()


@pytest.fixture(scope="module")
def policy():
    return load_policy("default")


@pytest.fixture(scope="module")
def generator(pipe, policy):
    return SafeTextGenerator(pipe, policy=policy)


class SlowGenerator:
    """A real guarded generator whose pipeline sleeps ``delay`` seconds after each step and counts the steps."""

    def __init__(self, inner: SafeTextGenerator, delay: float) -> None:
        self.inner, self.policy, self.pipe, self.delay = inner, inner.policy, inner.pipe, delay
        self.steps = 0
        self.started = threading.Event()
        self.raised: list[BaseException] = []

    def __call__(self, **kwargs):
        outer = kwargs.pop("callback_on_step_end", None)

        def callback(pipe, step, timestep, tensors):
            self.steps += 1
            self.started.set()
            time.sleep(self.delay)
            return outer(pipe, step, timestep, tensors) if outer is not None else {}

        try:
            return self.inner(callback_on_step_end=callback, **kwargs)
        except BaseException as exc:
            self.raised.append(exc)
            raise


def test_limits_are_derived_from_the_pipeline():
    glyph = build_tiny_glyph()
    assert native_size(glyph) == (16, 32) and default_steps(glyph) == 20
    resolved = ServiceLimits().resolve(SafeTextGenerator(glyph, policy="default"))
    assert (resolved.default_steps, resolved.max_steps, resolved.max_height, resolved.max_width) == (20, 40, 32, 64)
    assert resolved.max_compute == 2 * 20 * 16 * 32  # two default images
    sd15 = TINY_BUILDERS["sd15"]()
    height, width = native_size(sd15)
    assert height == width == sd15.unet.config.sample_size * sd15.vae_scale_factor
    assert default_steps(sd15) == 50
    explicit = ServiceLimits(max_steps=8, max_width=64, max_height=64, max_compute=10**6).resolve(sd15)
    assert (explicit.max_steps, explicit.default_steps, explicit.max_width, explicit.max_compute) == (8, 8, 64, 10**6)


def test_requests_beyond_the_model_limits_and_the_compute_budget_get_422(serve, generator, policy):
    url = serve(create_app(generator, policy, token=TOKEN))
    with httpx.Client(base_url=url, headers=AUTH, timeout=300) as client:
        plain = client.post("/v1/generate", json={"prompt": CLEAN})
        assert plain.status_code == 200 and plain.json()["steps"] == 20  # the pipeline's default steps
        for body, expected in (
            ({"prompt": CLEAN, "steps": 41}, "steps: Input should be less than or equal to 40"),
            ({"prompt": CLEAN, "width": 72}, "width: Input should be less than or equal to 64"),
            ({"prompt": CLEAN, "height": 40}, "height: Input should be less than or equal to 32"),
            ({"prompt": CLEAN, "width": 512, "height": 512, "steps": 50, "num_images": 4},
             "width: Input should be less than or equal to 64; height: Input should be less than or equal to 32; "
             "steps: Input should be less than or equal to 40"),
            ({"prompt": CLEAN, "steps": 40, "width": 64, "height": 32, "num_images": 4},
             "compute: steps x width x height x num_images = 40 x 64 x 32 x 4 = 327,680 step-pixels is over the "
             "per-request compute budget of 20,480 (--max-compute); lower steps, size or num_images"),
            ({"prompt": CLEAN, "num_images": 3},
             "compute: steps x width x height x num_images = 20 x 32 x 16 x 3 = 30,720 step-pixels is over the "
             "per-request compute budget of 20,480 (--max-compute); lower steps, size or num_images"),
        ):
            response = client.post("/v1/generate", json=body)
            assert response.status_code == 422, response.text
            assert response.json()["error"] == "invalid_request"
            assert sorted(response.json()["detail"].split("; ")) == sorted(expected.split("; "))
        within = client.post("/v1/generate", json={"prompt": CLEAN, "steps": 2, "width": 64, "height": 32, "num_images": 4})
        assert within.status_code == 200 and len(within.json()["images"]) == 4


def test_internal_exception_text_never_reaches_the_client(serve, policy, caplog):
    class Leaky:
        def __call__(self, **kwargs):
            raise ValueError("cannot read /srv/secrets/model.bin with key sk-live-123")

    url = serve(create_app(Leaky(), policy, token=TOKEN))
    with caplog.at_level(logging.ERROR, "safetext.service"):
        response = httpx.post(url + "/v1/generate", json={"prompt": CLEAN}, headers=AUTH, timeout=30)
    assert response.status_code == 500
    request_id = response.headers["x-request-id"]
    assert response.json() == {
        "error": "generation_failed",
        "detail": f"generation failed (ValueError); see the service log for request {request_id}",
    }
    assert "secrets" not in response.text and "sk-live" not in response.text
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and "sk-live-123" in str(logged[0].exc_info[1])


def test_routing_errors_and_deep_json_use_the_error_format(serve, generator, policy):
    url = serve(create_app(generator, policy, token=TOKEN))
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:
        missing = client.get("/v2/nothing")
        assert missing.status_code == 404
        assert missing.json() == {"error": "not_found",
                                  "detail": "no route /v2/nothing; the routes are /v1/generate, /v1/scan, /metrics, /healthz"}
        wrong = client.get("/v1/generate")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
        assert wrong.json() == {"error": "method_not_allowed", "detail": "GET is not allowed on /v1/generate"}
        for route in ("/v1/scan", "/v1/generate"):
            deep = client.post(route, content=b'{"prompt": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                               headers={"Content-Type": "application/json"})
            assert deep.status_code == 422
            assert deep.json() == {"error": "invalid_request", "detail": "body: the JSON is nested 5001 levels deep; "
                                   'the limit is 32 (send a flat object such as {"prompt": "..."})'}
        assert client.post("/v1/scan", json={"prompt": CLEAN}).status_code == 200
        assert client.get("/healthz").json()["status"] == "ok"


def test_a_disconnected_client_cancels_its_generation(serve, generator, policy, pipe):
    slow = SlowGenerator(generator, delay=0.05)
    limits = ServiceLimits(max_steps=1000, max_compute=10**9)
    url = serve(create_app(slow, policy, token=TOKEN, limits=limits))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + "/v1/generate", json={"prompt": CLEAN, "steps": 400}, headers=AUTH, timeout=1.0)
    deadline = time.monotonic() + 20
    while httpx.get(url + "/healthz").json()["queue"]["running"]:
        assert time.monotonic() < deadline, "the generation kept running after its client left"
        time.sleep(0.05)
    assert 0 < slow.steps < 100  # 400 steps would take 20 s
    assert len(slow.raised) == 1 and isinstance(slow.raised[0], Cancelled)
    # the pipeline is clean afterwards: a request is bit-identical to the raw pipeline
    ok = httpx.post(url + "/v1/generate", json={"prompt": CLEAN, "steps": 2, "seed": 3}, headers=AUTH, timeout=60)
    assert ok.status_code == 200
    import base64
    import io

    from PIL import Image

    served = Image.open(io.BytesIO(base64.b64decode(ok.json()["images"][0]["png_base64"]))).convert("RGB")
    direct = pipe(CLEAN, num_inference_steps=2, generator=torch.Generator().manual_seed(3)).images[0]
    assert served.tobytes() == direct.tobytes()


SERVER_SCRIPT = textwrap.dedent('''
    import sys
    from safetext.generator import SafeTextGenerator
    from safetext.service import ServiceLimits, create_app
    from safetext.service.server import run_server
    from tests.test_service_hardening import SlowGenerator
    from tests.tiny_pipelines import build_tiny_glyph

    class Reporting(SlowGenerator):
        def __call__(self, **kwargs):  # uvicorn re-raises SIGTERM after its shutdown: report as the call ends
            try:
                return super().__call__(**kwargs)
            finally:
                print(f"steps={self.steps} raised={[type(e).__name__ for e in self.raised]}", flush=True)

    slow = Reporting(SafeTextGenerator(build_tiny_glyph(), policy="default"), delay=0.2)
    app = create_app(slow, "default", token=None, insecure_no_auth=True,
                     limits=ServiceLimits(max_steps=5000, max_compute=10**10), shutdown_timeout=1.0)
    run_server(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", shutdown_timeout=1.0)
''')


def start_long_generation(url: str, client_timeout: float, start_deadline: float) -> tuple[threading.Thread, list]:
    """Post a 900-step generation (three minutes at 0.2 s a step unless cancelled) from a thread; return once
    the service reports it running. The list receives the response or the client's error."""
    answers: list[object] = []

    def long_request():
        try:
            answers.append(httpx.post(url + "/v1/generate", json={"prompt": CLEAN, "steps": 900},
                                      timeout=client_timeout))
        except httpx.HTTPError as exc:
            answers.append(exc)

    client = threading.Thread(target=long_request)
    client.start()
    while httpx.get(url + "/healthz", timeout=5).json()["queue"]["running"] == 0:
        assert time.monotonic() < start_deadline, "the generation never started"
        time.sleep(0.05)
    return client, answers


def sigterm_and_wait(process: subprocess.Popen, timeout: float) -> tuple[float, str | None, str | None]:
    """Send SIGTERM and wait for the process to exit: ``(seconds it took, stdout, stderr)``."""
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=timeout)
    return time.monotonic() - signalled, out, err


def kill_if_running(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
        process.communicate()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.timeout(300)
def test_sigterm_stops_the_server_within_the_shutdown_timeout():
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, str(port)], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180  # importing torch on a loaded machine
        while True:
            assert process.poll() is None, process.stderr.read()
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        client, answers = start_long_generation(url, client_timeout=60, start_deadline=time.monotonic() + 60)
        time.sleep(0.3)
        elapsed, out, err = sigterm_and_wait(process, timeout=30)
    finally:
        kill_if_running(process)
    client.join(30)
    assert elapsed < 10, f"the server took {elapsed:.1f} s to stop after SIGTERM"
    assert process.returncode in (0, -signal.SIGTERM), err
    steps_line = [line for line in out.splitlines() if line.startswith("steps=")][-1]
    steps = int(steps_line.split()[0].split("=")[1])
    assert steps < 200 and "Cancelled" in steps_line, steps_line
    assert answers and not (isinstance(answers[0], httpx.Response) and answers[0].status_code == 200)


def test_a_queued_request_whose_client_left_never_starts(serve, generator, policy):
    calls: list[str] = []
    gate, entered = threading.Event(), threading.Event()

    class Gated:
        def __init__(self) -> None:
            self.policy, self.pipe = policy, generator.pipe

        def __call__(self, **kwargs):
            calls.append(kwargs["prompt"])
            entered.set()
            assert gate.wait(60)
            return generator(**kwargs)

    url = serve(create_app(Gated(), policy, token=TOKEN, max_queue=2))
    with httpx.Client(base_url=url, headers=AUTH, timeout=120) as client:
        first = threading.Thread(target=client.post, args=("/v1/generate",), kwargs={"json": {"prompt": CLEAN, "steps": 1}})
        first.start()
        assert entered.wait(60)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/generate", json={"prompt": "A queued sign", "steps": 1}, headers=AUTH, timeout=1.0)
        deadline = time.monotonic() + 20
        while client.get("/healthz").json()["queue"]["waiting"]:
            assert time.monotonic() < deadline, "the abandoned request kept its place in the queue"
            time.sleep(0.05)
        gate.set()
        first.join(60)
        assert client.get("/healthz").json()["queue"] == {"running": 0, "waiting": 0, "workers": 1, "max_queue": 2}
    assert calls == [CLEAN]  # the abandoned request never reached the pipeline
