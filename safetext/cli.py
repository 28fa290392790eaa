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


#: The module that adds each subcommand: ``safetext policy lint`` imports the policy code only, not
#: torch and diffusers (seconds of start-up).
COMMANDS = {
    "generate": "safetext.generate_cli",
    "scan": "safetext.policy.cli",
    "policy": "safetext.policy.cli",
    "train-glyph": "safetext.models.glyph.cli",
    "train-lora": "safetext.lora.cli",
    "bench": "safetext.bench.cli",
    "serve": "safetext.service.cli",
    "localize": "safetext.localize.cli",
    "edit": "safetext.edit.cli",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``safetext`` parser; with ``command``, only that subcommand's module is imported."""
    parser = argparse.ArgumentParser(prog="safetext", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = (COMMANDS[command],) if command in COMMANDS else COMMAND_MODULES
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    # Only the CLI configures logging.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
