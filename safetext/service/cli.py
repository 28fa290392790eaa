"""`safetext serve`: run the HTTP service.

    SAFETEXT_API_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))') \\
        safetext serve --policy default --port 8000

loads the pipeline (default: the embedded glyph model) and the policy once at start, then serves
``/v1/generate``, ``/v1/scan``, ``/metrics`` and ``/healthz`` (see :mod:`safetext.service.app`).
"""

from __future__ import annotations

import argparse
import logging
import sys

from safetext.service.guards import TOKEN_ENV, load_token
from safetext.service.limits import ServiceLimits
from safetext.service.ratelimit import DEFAULT_MAX_SCANS_PER_CLIENT, DEFAULT_SCAN_RATE

logger = logging.getLogger("safetext.service")

_LIMIT_FLAGS = {
    "max_body_bytes": "largest request body in bytes (413 beyond)",
    "max_prompt_chars": "longest prompt in characters",
    "max_steps": "most denoising steps per request (default: twice the model's default steps)",
    "default_steps": "steps when a request names none (default: the model's)",
    "max_width": "largest image width (default: twice the model's native width)",
    "max_height": "largest image height (default: twice the model's native height)",
    "max_images": "most images per request",
    "max_compute": "most steps x width x height x images per request, 422 beyond "
                   "(default: two native-size images at the default steps)",
    "max_json_depth": "deepest JSON nesting of a request body",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    defaults = ServiceLimits()
    p = subparsers.add_parser("serve", help="run the HTTP service (/v1/generate, /v1/scan, /metrics, /healthz)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument("--model", default=None, help="local diffusers pipeline directory (default: the embedded glyph model)")
    p.add_argument("--policy", default="default", help="policy name or YAML path (default: %(default)s)")
    p.add_argument("--layer-map", default=None, help="layer map file (default: the preset for the model)")
    p.add_argument("--token-file", default=None, help=f"file holding the bearer token (default: ${TOKEN_ENV})")
    p.add_argument("--insecure-no-auth", action="store_true", help="serve without authentication (local experiments only)")
    p.add_argument("--max-queue", type=int, default=8, help="requests allowed to wait for a worker; 503 beyond (default: %(default)s)")
    p.add_argument("--max-concurrency", type=int, default=1, help="generation workers, one pipeline each (default: %(default)s)")
    p.add_argument("--worker", choices=["thread", "process"], default="process",
                   help="where generations run: 'thread' (in this process) or 'process' (a worker process per pipeline, "
                        "restarted if it dies; scans and /healthz never share the denoiser's interpreter lock; best with "
                        "a core to spare for the HTTP process) (default: %(default)s)")
    p.add_argument("--worker-threads", type=int, default=None,
                   help="torch intra-op threads of each worker process (default: CPU cores less one, at least 1)")
    p.add_argument("--max-waiting-per-client", type=int, default=None,
                   help="most requests one client may have waiting; 503 beyond (default: only --max-queue bounds it)")
    p.add_argument("--client-header", default=None,
                   help="header naming the client for the fair queue, set by a trusted proxy (e.g. X-Forwarded-For); "
                        "default: the remote address")
    p.add_argument("--scan-rate", type=float, default=DEFAULT_SCAN_RATE,
                   help="characters per second each client may scan on average (a scan costs its prompt's length "
                        "plus 100); 429 with Retry-After beyond; 0 disables (default: %(default).0f)")
    p.add_argument("--scan-burst", type=int, default=None,
                   help="characters a client may scan at once after a pause (default: two seconds of --scan-rate)")
    p.add_argument("--max-scans-per-client", type=int, default=DEFAULT_MAX_SCANS_PER_CLIENT,
                   help="most scans one client may have running at once; 429 beyond; 0 disables (default: %(default)s)")
    p.add_argument("--worker-nice", type=int, default=None,
                   help="niceness (0-19) added to the worker processes so that scans and /healthz get a core first "
                        "when the CPUs are busy (default: inherit)")
    p.add_argument("--worker-cpus", type=_cpu_list, default=None,
                   help="CPUs to pin the worker processes to, e.g. '1-3' or '1,2' (Linux; default: all)")
    for name, help_text in _LIMIT_FLAGS.items():
        default = getattr(defaults, name)
        p.add_argument("--" + name.replace("_", "-"), type=int, default=default,
                       help=help_text if default is None else f"{help_text} (default: %(default)s)")
    p.add_argument("--shutdown-timeout", type=float, default=30.0,
                   help="on SIGTERM/SIGINT: seconds running generations may take to finish before they are cancelled "
                        "at their next step (default: %(default)s)")
    p.add_argument("--allow-paths", action="store_true",
                   help="let the policy's list paths leave its folder (absolute, ~, ..); only for trusted policy files")
    p.add_argument("--log-prompts", action="store_true", help="write prompt text into the request log events (default: a hash)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn log level (default: %(default)s)")
    p.set_defaults(func=serve)


def _cpu_list(text: str) -> frozenset[int]:
    """``'1-3,5'`` as ``{1, 2, 3, 5}`` (the ``taskset -c`` syntax)."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a CPU list such as '1-3' or '1,2'") from None
    if not cpus:
        raise argparse.ArgumentTypeError(f"{text!r} names no CPU")
    return frozenset(cpus)


def serve(args: argparse.Namespace) -> int:
    """Validate the options, load the policy, build the app and run uvicorn until interrupted."""
    from safetext.policy import load_policy
    from safetext.service.app import create_app
    from safetext.service.server import run_server

    try:
        token = load_token(args.token_file)
        if token is None and not args.insecure_no_auth:
            raise ValueError(
                f"no API token: set {TOKEN_ENV} or pass --token-file PATH (or --insecure-no-auth to serve "
                "without authentication)"
            )
        if token is not None and args.insecure_no_auth:
            raise ValueError(f"--insecure-no-auth was given but a token is set ({TOKEN_ENV} or --token-file); drop one")
        limits = ServiceLimits(**{name: getattr(args, name) for name in _LIMIT_FLAGS})
        policy = load_policy(args.policy, allow_paths=args.allow_paths)

        from safetext.service.worker import GeneratorRecipe

        recipe = GeneratorRecipe(model=args.model, policy=args.policy, layer_map=args.layer_map,
                                 allow_paths=args.allow_paths)
        app = create_app(
            generator_factory=recipe, policy=policy, token=token, insecure_no_auth=token is None,
            max_queue=args.max_queue, max_concurrency=args.max_concurrency, limits=limits,
            log_prompts=args.log_prompts, shutdown_timeout=args.shutdown_timeout, worker=args.worker,
            worker_threads=args.worker_threads if args.worker == "process" else None,
            max_waiting_per_client=args.max_waiting_per_client, client_header=args.client_header,
            scan_rate=args.scan_rate or None, scan_burst=args.scan_burst if args.scan_rate else None,
            max_scans_per_client=args.max_scans_per_client or None,
            worker_nice=args.worker_nice if args.worker == "process" else None,
            worker_cpus=args.worker_cpus if args.worker == "process" else None,
        )
    except ValueError as exc:  # bad options, token or policy (PolicyError is a ValueError)
        print(f"safetext serve: {exc}", file=sys.stderr)
        return 2
    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving WITHOUT authentication on %s; anyone who can reach it can generate", args.host)
    run_server(app, host=args.host, port=args.port, log_level=args.log_level, shutdown_timeout=args.shutdown_timeout)
    return 0
