"""The HTTP service over real HTTP: uvicorn on 127.0.0.1 in a background thread, driven with httpx."""

from __future__ import annotations

import argparse
import base64
import io
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import structlog
import torch
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from safetext.policy import load_policy
from safetext.service import GenerationPool, Overloaded, ServiceLimits, create_app, load_token
from safetext.service import cli as service_cli
from tests.tiny_pipelines import TINY_GLYPH_CONFIG, build_tiny_glyph

TINY = TINY_GLYPH_CONFIG
TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLEAN = 'A red sign that says "hello".'
TOXIC = 'A blue sign that says "fuck".'
BLOCKED = 'A green sign that says "forbiddenword".'
POLICY = {
    "name": "service-test",
    "lists": [{"path": "lists/ldnoobw_en.txt", "category": "sexual"}],
    "rules": [
        {"id": "sexual", "category": "sexual", "action": "neutralize"},
        {"id": "blocked-term", "category": "custom", "action": "block", "terms": ["forbiddenword"]},
    ],
}


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_glyph()


@pytest.fixture(scope="module")
def policy():
    return load_policy(POLICY)


@pytest.fixture(scope="module")
def generator(pipe, policy):
    from safetext.generator import SafeTextGenerator

    return SafeTextGenerator(pipe, policy=policy)


def metric(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """One sample's value from a Prometheus exposition (None when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return sample.value
    return None


def decode_png(item: dict) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(item["png_base64"])))
    assert image.format == "PNG"
    return image


class GatedGenerator:
    """Wraps a generator; each call waits for ``gate`` so a test controls exactly how long generations take."""

    def __init__(self, inner) -> None:
        self.inner, self.policy = inner, inner.policy
        self.gate, self.entered = threading.Event(), threading.Event()

    def __call__(self, *args, **kwargs):
        self.entered.set()
        if not self.gate.wait(timeout=60):
            raise TimeoutError("test gate never opened")
        return self.inner(*args, **kwargs)


def test_auth_is_required_everywhere_but_healthz(serve, generator, policy):
    url = serve(create_app(generator, policy, token=TOKEN))
    with httpx.Client(base_url=url, timeout=30) as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "policy": "service-test",
                                 "queue": {"running": 0, "waiting": 0, "workers": 1, "max_queue": 8},
                                 "workers": {"mode": "thread", "restarts": 0}}
        missing = client.post("/v1/generate", json={"prompt": CLEAN, "steps": 1})
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == 'Bearer realm="safetext"'
        assert missing.json() == {"error": "unauthorized", "detail": "missing bearer token; send 'Authorization: Bearer <token>'"}
        wrong = client.post("/v1/scan", json={"prompt": CLEAN}, headers={"Authorization": f"Bearer {TOKEN[:-1]}x"})
        assert wrong.status_code == 401 and wrong.json()["detail"].startswith("invalid bearer token")
        assert client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        # an unauthenticated client never reaches validation: 401, not 422
        assert client.post("/v1/generate", content=b"not json").status_code == 401
        assert client.get("/metrics", headers=AUTH).status_code == 200


@pytest.fixture
def stdlib_logging():
    """Request events go through stdlib logging (structlog unconfigured), restored afterwards."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def test_generate_clean_neutralized_and_blocked(serve, pipe, generator, policy, caplog, stdlib_logging):
    url = serve(create_app(generator, policy, token=TOKEN))
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client, caplog.at_level(logging.INFO, "safetext.service"):
        clean = client.post("/v1/generate", json={"prompt": CLEAN, "seed": 7, "steps": 2, "num_images": 2})
        assert clean.status_code == 200, clean.text
        body = clean.json()
        assert body["verdict"]["action"] == "allow" and body["seed"] == 7 and body["steps"] == 2
        assert [(i["width"], i["height"]) for i in body["images"]] == [(32, 16), (32, 16)]
        images = [decode_png(i) for i in body["images"]]
        assert [im.size for im in images] == [(32, 16), (32, 16)]
        # a clean prompt runs the untouched pipeline: the PNG holds exactly the pipeline's pixels
        direct = pipe(CLEAN, num_inference_steps=2, num_images_per_prompt=2, generator=torch.Generator().manual_seed(7)).images
        assert [im.convert("RGB").tobytes() for im in images] == [im.tobytes() for im in direct]

        sized = client.post("/v1/generate", json={"prompt": CLEAN, "steps": 1, "width": 48, "height": 24})
        assert sized.status_code == 200 and decode_png(sized.json()["images"][0]).size == (48, 24)

        toxic = client.post("/v1/generate", json={"prompt": TOXIC, "seed": 7, "steps": 2})
        assert toxic.status_code == 200, toxic.text
        verdict = toxic.json()["verdict"]
        assert verdict["action"] == "neutralize" and verdict["findings"][0]["normalized"] == "fuck"
        assert "fuck" not in verdict["sanitized_prompt"]
        assert verdict["details"]["layers"] and verdict["details"]["total_steps"] == 2  # the patch ran

        blocked = client.post("/v1/generate", json={"prompt": BLOCKED, "steps": 2})
        assert blocked.status_code == 403
        assert blocked.json()["error"] == "policy_violation" and blocked.json()["verdict"]["action"] == "block"
        assert blocked.json()["verdict"]["findings"][0]["rule_id"] == "blocked-term"

        scan = client.post("/v1/scan", json={"prompt": TOXIC})
        assert scan.status_code == 200 and scan.json()["verdict"] == policy.scan(TOXIC).to_dict()
        text = client.get("/metrics").text

    events = [r.safetext for r in caplog.records if r.name == "safetext.service" and hasattr(r, "safetext")]
    assert [(e["route"], e["status"], e["decision"]) for e in events] == [
        ("/v1/generate", 200, "allow"), ("/v1/generate", 200, "allow"), ("/v1/generate", 200, "neutralize"),
        ("/v1/generate", 403, "block"), ("/v1/scan", 200, "neutralize"),
    ]
    logged = " ".join(r.getMessage() + repr(r.safetext) for r in caplog.records if hasattr(r, "safetext"))
    assert "fuck" not in logged and "hello" not in logged and "forbiddenword" not in logged

    assert metric(text, "safetext_requests_total", {"decision": "allow"}) == 2.0
    assert metric(text, "safetext_requests_total", {"decision": "neutralize"}) == 2.0  # generate + scan
    assert metric(text, "safetext_requests_total", {"decision": "block"}) == 1.0
    assert metric(text, "safetext_requests_total", {"decision": "error"}) == 0.0
    assert metric(text, "safetext_findings_total", {"category": "sexual", "backend": "wordlist"}) == 2.0
    assert metric(text, "safetext_findings_total", {"category": "custom", "backend": "wordlist"}) == 1.0
    assert metric(text, "safetext_generation_seconds_count", {"guarded": "false"}) == 2.0
    assert metric(text, "safetext_generation_seconds_count", {"guarded": "true"}) == 1.0
    assert metric(text, "safetext_scan_seconds_count") == 5.0  # every request was scanned once
    assert metric(text, "safetext_patch_overhead_seconds_count") == 1.0  # only the neutralized generation
    assert metric(text, "safetext_http_responses_total", {"route": "/v1/generate", "status": "200"}) == 3.0
    assert metric(text, "safetext_http_responses_total", {"route": "/v1/generate", "status": "403"}) == 1.0
    for secret in ("fuck", "hello", "forbiddenword", "sign"):
        assert secret not in text


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"prompt": CLEAN, "steps": 0}, "steps", "Input should be greater than or equal to 1"),
        ({"prompt": CLEAN, "steps": 9}, "steps", "Input should be less than or equal to 8"),
        ({"prompt": CLEAN, "width": 36}, "width", "Input should be a multiple of 8"),
        ({"prompt": CLEAN, "height": 128}, "height", "Input should be less than or equal to 64"),
        ({"prompt": CLEAN, "num_images": 3}, "num_images", "Input should be less than or equal to 2"),
        ({"prompt": CLEAN, "seed": "7"}, "seed", "Input should be a valid integer"),
        ({"prompt": CLEAN, "seed": -1}, "seed", "Input should be greater than or equal to 0"),
        ({"prompt": "x" * 201}, "prompt", "String should have at most 200 characters"),
        ({"prompt": ""}, "prompt", "String should have at least 1 character"),
        ({"prompt": CLEAN, "negative": "x"}, "negative", "unknown field; remove it (see /docs for the accepted fields)"),
        ({"steps": 2}, "prompt", "Field required"),
    ],
)
def test_invalid_parameters_get_422_naming_the_field(serve, generator, policy, body, field, message):
    limits = ServiceLimits(max_prompt_chars=200, max_steps=8, default_steps=2, max_width=64, max_height=64, max_images=2)
    url = serve(create_app(generator, policy, token=TOKEN, limits=limits))
    response = httpx.post(url + "/v1/generate", json=body, headers=AUTH, timeout=30)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["detail"] == f"{field}: {message}"
    assert "x" * 201 not in response.text  # the offending input is not echoed back


def test_oversize_body_gets_413_and_bad_json_422(serve, generator, policy):
    url = serve(create_app(generator, policy, token=TOKEN, limits=ServiceLimits(max_body_bytes=1024)))
    with httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:
        big = client.post("/v1/generate", json={"prompt": "a" * 2000})
        assert big.status_code == 413
        assert big.json()["detail"].endswith("the limit is 1024 bytes (shorten the prompt)")

        def chunks():  # no Content-Length: the limit is enforced while streaming
            for _ in range(40):
                yield b"x" * 100

        streamed = client.post("/v1/scan", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413 and streamed.json()["error"] == "payload_too_large"
        bad = client.post("/v1/scan", content=b'{"prompt": ', headers={"Content-Type": "application/json"})
        assert bad.status_code == 422 and bad.json()["detail"] == "body: the body is not valid JSON (error at character 11)"
        metrics = client.get("/metrics").text
    assert metric(metrics, "safetext_http_responses_total", {"route": "/v1/generate", "status": "413"}) == 1.0
    assert metric(metrics, "safetext_http_responses_total", {"route": "/v1/scan", "status": "413"}) == 1.0


def test_burst_beyond_the_queue_bound_gets_503_and_the_loop_stays_responsive(serve, generator, policy):
    gated = GatedGenerator(generator)
    url = serve(create_app(gated, policy, token=TOKEN, max_queue=2))
    body = {"prompt": CLEAN, "steps": 1}
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client, ThreadPoolExecutor(4) as pool:
        running = pool.submit(client.post, "/v1/generate", json=body)
        assert gated.entered.wait(30)
        waiting = [pool.submit(client.post, "/v1/generate", json=body) for _ in range(2)]
        deadline = time.monotonic() + 30
        while client.get("/healthz").json()["queue"]["waiting"] < 2:  # the event loop answers meanwhile
            assert time.monotonic() < deadline, "queued requests never showed up"
            time.sleep(0.02)
        rejected = [client.post("/v1/generate", json=body) for _ in range(5)]  # bounded burst
        assert [r.status_code for r in rejected] == [503] * 5
        assert rejected[0].headers["retry-after"] == "1"
        assert rejected[0].json()["detail"].startswith("all 1 generation worker(s) are busy and 2 request(s) are already waiting")
        assert client.post("/v1/scan", json={"prompt": CLEAN}).status_code == 200  # scans do not queue behind
        gated.gate.set()
        assert [f.result(timeout=60).status_code for f in [running, *waiting]] == [200, 200, 200]
        assert client.get("/healthz").json()["queue"] == {"running": 0, "waiting": 0, "workers": 1, "max_queue": 2}
        text = client.get("/metrics").text
    assert metric(text, "safetext_http_responses_total", {"route": "/v1/generate", "status": "503"}) == 5.0
    assert metric(text, "safetext_http_responses_total", {"route": "/v1/generate", "status": "200"}) == 3.0
    assert metric(text, "safetext_requests_total", {"decision": "allow"}) == 4.0  # 3 generations + 1 scan
    assert metric(text, "safetext_queue_waiting") == 0.0


def test_generation_failure_is_a_500_counted_as_error(serve, policy):
    class Broken:
        def __call__(self, **kwargs):
            raise RuntimeError("out of memory")

    url = serve(create_app(Broken(), policy, token=TOKEN))
    response = httpx.post(url + "/v1/generate", json={"prompt": CLEAN}, headers=AUTH, timeout=30)
    assert response.status_code == 500
    assert response.json()["detail"].startswith("generation failed (RuntimeError); see the service log for request ")
    text = httpx.get(url + "/metrics", headers=AUTH).text
    assert metric(text, "safetext_requests_total", {"decision": "error"}) == 1.0
    # the worker is free again afterwards
    assert httpx.get(url + "/healthz").json()["queue"]["running"] == 0


def test_factory_builds_one_generator_per_worker(serve, generator, policy):
    built = []

    def factory():
        built.append(threading.current_thread().name)
        return generator

    url = serve(create_app(generator_factory=factory, policy=policy, token=TOKEN, max_concurrency=2, max_queue=0))
    assert len(built) == 2
    assert httpx.get(url + "/healthz").json()["queue"] == {"running": 0, "waiting": 0, "workers": 2, "max_queue": 0}


def test_create_app_refuses_unsafe_configurations(generator, policy):
    with pytest.raises(ValueError, match="no API token: pass token=.*insecure_no_auth=True"):
        create_app(generator, policy, token=None)
    with pytest.raises(ValueError, match="max_concurrency=2 with one shared generator"):
        create_app(generator, policy, token=TOKEN, max_concurrency=2)
    with pytest.raises(ValueError, match="pass exactly one of `generator`"):
        create_app(None, policy, token=TOKEN)
    with pytest.raises(ValueError, match="max_queue must be an integer >= 0, got -1"):
        create_app(generator, policy, token=TOKEN, max_queue=-1)
    with pytest.raises(ValueError, match=r"ServiceLimits.default_steps \(60\) exceeds max_steps \(50\)"):
        ServiceLimits(default_steps=60, max_steps=50)
    assert create_app(generator, policy, token=None, insecure_no_auth=True) is not None


def test_pool_refuses_beyond_its_bound_and_releases_places():
    import asyncio

    pool = GenerationPool(["g"], max_queue=1)
    pool.admit()
    pool.admit()
    with pytest.raises(Overloaded, match="all 1 generation worker"):
        pool.admit()
    pool.release()
    pool.release()
    with pytest.raises(RuntimeError, match="without a matching admit"):
        pool.release()
    assert asyncio.run(pool.run(lambda gen: gen * 2)) == "gg"
    assert pool.state().to_dict() == {"running": 0, "waiting": 0, "workers": 1, "max_queue": 1}
    pool.close()


def test_token_loading(tmp_path, monkeypatch):
    monkeypatch.delenv("SAFETEXT_API_TOKEN", raising=False)
    assert load_token() is None
    monkeypatch.setenv("SAFETEXT_API_TOKEN", TOKEN)
    assert load_token() == TOKEN
    path = tmp_path / "token"
    path.write_text("file-token-0123456789\n")
    assert load_token(path) == "file-token-0123456789"  # the file wins, newline stripped
    path.write_text("short")
    with pytest.raises(ValueError, match="the token has 5 characters; use at least 16"):
        load_token(path)
    with pytest.raises(ValueError, match="no such file"):
        load_token(tmp_path / "missing")


def _serve_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    service_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_cli_refuses_to_start_without_a_token(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("SAFETEXT_API_TOKEN", raising=False)
    args = _serve_args([])
    assert args.func(args) == 2
    assert "no API token: set SAFETEXT_API_TOKEN or pass --token-file PATH (or --insecure-no-auth" in capsys.readouterr().err
    monkeypatch.setenv("SAFETEXT_API_TOKEN", TOKEN)
    args = _serve_args(["--insecure-no-auth"])
    assert args.func(args) == 2
    assert "--insecure-no-auth was given but a token is set" in capsys.readouterr().err
    args = _serve_args(["--max-steps", "4", "--default-steps", "20"])
    assert args.func(args) == 2
    assert "default_steps (20) exceeds max_steps (4)" in capsys.readouterr().err


def test_serve_runs_generations_in_a_worker_process_by_default():
    assert _serve_args([]).worker == "process"
    assert _serve_args(["--worker", "thread"]).worker == "thread"
