"""The `safetext` command: generate, scan, policy lint, localize, inspect, train-lora, edit, bench, serve, train-glyph."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: Modules that contribute subcommands through ``register(subparsers)``.
COMMAND_MODULES = (
    "safetext.generate_cli",
    "safetext.policy.cli",
    "safetext.models.glyph.cli",
    "safetext.lora.cli",
    "safetext.bench.cli",
    "safetext.service.cli",
    "safetext.localize.cli",
    "safetext.patching.cli",
    "safetext.edit.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="safetext", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Only the CLI configures logging.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
