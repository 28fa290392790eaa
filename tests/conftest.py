"""Shared test fixtures: tiny random-weight diffusers pipelines built from configs.

``tiny_pipe`` runs a test once per architecture in :data:`tests.tiny_pipelines.TINY_BUILDERS`; pick a
subset with indirect parametrization::

    @pytest.mark.parametrize("tiny_pipe", ["sd15", "flux"], indirect=True)
    def test_something(tiny_pipe, tiny_call_kwargs): ...

The pipelines are session-scoped and shared: a test that changes one (hooks, adapters, scheduler) must
undo the change before it returns.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from tests.tiny_pipelines import TINY_BUILDERS, TINY_CALL_KWARGS  # noqa: E402


@pytest.fixture(scope="session", params=list(TINY_BUILDERS))
def tiny_pipe(request):
    """A tiny pipeline, built once per session for each architecture name (``request.param``)."""
    name = request.param
    if name not in TINY_BUILDERS:
        raise ValueError(f"unknown tiny pipeline {name!r}; choose one of {sorted(TINY_BUILDERS)}")
    return TINY_BUILDERS[name]()


@pytest.fixture
def tiny_pipe_name(request, tiny_pipe) -> str:
    """Architecture name of the ``tiny_pipe`` the current test runs with (``"sd15"``, ``"flux"``, ...)."""
    return request.node.callspec.params["tiny_pipe"]


@pytest.fixture
def tiny_call_kwargs(tiny_pipe_name) -> dict:
    """Fresh copy of the default call arguments (size, steps, guidance, output type) for ``tiny_pipe``."""
    return dict(TINY_CALL_KWARGS[tiny_pipe_name])


@pytest.fixture
def serve():
    """Start apps with uvicorn on a free loopback port; every server is stopped when the test ends."""
    from safetext.service import BackgroundServer

    servers: list[BackgroundServer] = []

    def start(app) -> str:
        server = BackgroundServer(app, host="127.0.0.1", port=0).start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def everything():
    """The shipped ``default`` policy with every language pack enabled (English and the six others)."""
    from safetext.policy import load_policy

    config = load_policy("default").config.model_copy(
        update={"languages": ("en", "de", "es", "fr", "pt", "it", "nl"), "name": "all-languages"}
    )
    return load_policy(config.model_dump())
