"""``safetext scan`` and ``safetext policy {lint,schema}`` commands.

``register(subparsers)`` adds them to the ``safetext`` command; each sets ``func(args) -> int``.

    safetext scan 'A sign that says "sh1t"' --policy strict --json
    safetext policy lint my_policy.yaml        # exit 1 with file:line:col messages when invalid
    safetext policy schema > policy.schema.json
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from safetext.errors import BackendError, PolicyError
from safetext.policy.loader import lint_policy_file, load_policy
from safetext.policy.schema import policy_json_schema_text
from safetext.policy.verdict import Verdict


_ALLOW_PATHS_HELP = ("let the policy's list paths leave its folder (absolute, ~, ..); only for trusted policy files "
                     "(default: the policy's folder and safetext's shipped lists)")


def format_verdict(verdict: Verdict) -> str:
    """Human-readable verdict: action, sanitized prompt, one line per finding."""
    lines = [f"action: {verdict.action.value}   (policy: {verdict.policy})"]
    if verdict.sanitized_prompt != verdict.prompt:
        lines.append(f"sanitized: {verdict.sanitized_prompt}")
    if verdict.rendered_spans:
        spans = ", ".join(repr(verdict.prompt[s:e]) for s, e in verdict.rendered_spans)
        lines.append(f"rendered text: {spans}")
    for finding in verdict.findings:
        where = "rendered" if finding.rendered else "scene"
        steps = "+".join(finding.normalizations) or "exact"
        replaced = f" -> {finding.replacement!r}" if finding.replacement is not None else ""
        lines.append(
            f"  [{finding.start}:{finding.end}] {finding.text!r} ({finding.normalized}; {steps}) "
            f"{finding.category}/{finding.rule_id} score={finding.score:.2f} {where} {finding.action.value}{replaced}"
        )
    if not verdict.findings:
        lines.append("  no findings")
    return "\n".join(lines)


def _scan(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        policy = load_policy(args.policy, allow_paths=args.allow_paths)
        verdict = policy.scan(args.text, slot=args.slot)
    except (PolicyError, BackendError) as exc:
        print(f"error: {exc}", file=err)
        return 2
    print(verdict.to_json(indent=2) if args.json else format_verdict(verdict), file=out)
    return 0


def _lint(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    failed = False
    for path in args.files:
        problems = lint_policy_file(path, allow_paths=args.allow_paths)
        if problems:
            failed = True
            for problem in problems:
                print(problem, file=err)
        else:
            print(f"{path}: ok", file=out)
    return 1 if failed else 0


def _schema(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    out.write(policy_json_schema_text())
    return 0


def _reference(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    from safetext.policy.reference import policy_reference_markdown

    (out or sys.stdout).write(policy_reference_markdown())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``scan`` and ``policy`` (with ``lint`` and ``schema``) to the ``safetext`` command.

    Args:
        subparsers: the object returned by ``parser.add_subparsers()``.
    """
    scan = subparsers.add_parser("scan", help="scan a prompt with a policy and print the verdict")
    scan.add_argument("text", help="the prompt to scan")
    scan.add_argument("--policy", default=None, help="policy name (default, strict, permissive) or YAML file")
    scan.add_argument("--slot", default="prompt", help="pipeline argument the prompt belongs to")
    scan.add_argument("--json", action="store_true", help="print the verdict as JSON")
    scan.add_argument("--allow-paths", action="store_true", help=_ALLOW_PATHS_HELP)
    scan.set_defaults(func=_scan)

    policy = subparsers.add_parser("policy", help="policy file tools")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    lint = policy_sub.add_parser("lint", help="validate policy files; exit 1 with file:line:col messages")
    lint.add_argument("files", nargs="+", help="policy YAML files")
    lint.add_argument("--allow-paths", action="store_true", help=_ALLOW_PATHS_HELP)
    lint.set_defaults(func=_lint)
    schema = policy_sub.add_parser("schema", help="print the JSON Schema of policy files")
    schema.set_defaults(func=_schema)
    reference = policy_sub.add_parser("reference", help="print the Markdown policy reference generated from the schema")
    reference.set_defaults(func=_reference)
