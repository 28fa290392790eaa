"""``safetext scan``, ``safetext policy {lint,schema}`` and ``safetext train-classifier`` commands.

``register(subparsers)`` adds them to the ``safetext`` command; each sets ``func(args) -> int``.

    safetext scan 'A sign that says "sh1t"' --policy strict --json
    safetext scan 'A sign that says "fuxk"' --explain   # normalization chain and match evidence
    safetext train-classifier --out safetext/models/charngram --exclude-prompts benchmarks/data/policy_eval/*.jsonl
    safetext policy lint my_policy.yaml        # exit 1 with file:line:col messages when invalid
    safetext policy schema > policy.schema.json
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

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
            f"{finding.category}/{finding.rule_id} score={finding.score:.2f} {where} {finding.action.value}{replaced} "
            f"language={finding.language}"
        )
    if not verdict.findings:
        lines.append("  no findings")
    return "\n".join(lines)


def explain(policy: Any, text: str) -> str:
    """The normalization chain and every backend's evidence for ``text`` (``safetext scan --explain``).

    Lists the normalized text, the tokens (with the steps that shaped them), and what each backend
    saw: the list entry, reading, split, sound-alike skeleton, compound parts, or classifier
    probability, with the span and score. The verdict (after allow-list and thresholds) follows.
    """
    from safetext.policy.backends import ScanDocument
    from safetext.policy.confusables import step_names
    from safetext.policy.normalize import normalize_chars, tokenize
    from safetext.policy.rendered import find_rendered_spans

    config = policy.config.normalization
    norm = normalize_chars(text, config)
    tokens = tokenize(norm, config)
    lines = [f"steps on: {', '.join(config.enabled_steps())}", f"normalized: {norm.text!r}", "tokens:"]
    for token in tokens:
        start, end = norm.span(token.start, token.end)
        steps = "+".join(step_names(token.mask)) or "-"
        lines.append(f"  [{start}:{end}] {text[start:end]!r} -> {token.text!r} ({steps})")
    rendered = find_rendered_spans(text, policy.config.rendered_text.max_words) if policy.config.rendered_text.enabled else ()
    document = ScanDocument(text, norm, tokens, rendered, False)
    lines.append("evidence:")
    found = False
    for backend in policy._backends:
        for detection in backend.detect(document):
            if detection.score <= 0.0:
                continue
            found = True
            steps = "+".join(detection.normalizations) or "exact"
            lines.append(
                f"  {backend.name}: [{detection.start}:{detection.end}] {text[detection.start:detection.end]!r} -> "
                f"{detection.normalized!r} {detection.category} score={detection.score:.2f} ({steps}) {detection.evidence}"
            )
    packs = getattr(policy, "_packs", {})
    if packs:
        from safetext.policy.languages import guess_language

        for code, pack in packs.items():
            exact = list(pack.lexicon.find(norm, tokens))
            hits = [(m.start, m.end, m.term.form, "list entry") for m in exact]
            hits += [(h.start, h.end, h.term.form, h.evidence) for h in pack.variants.find(norm, tokens, [(m.start, m.end) for m in exact])]
            for start, end, form, evidence in hits:
                found = True
                s, e = norm.span(start, end)
                lines.append(f"  wordlist[{code}]: [{s}:{e}] {text[s:e]!r} -> {form!r} ({evidence})")
    if not found:
        lines.append("  none")
    if packs:
        language = guess_language(tokens, policy.config.languages, config)
        lines.append(
            f"language: {language} (guessed from the words; policy languages: {', '.join(policy.config.languages)}); "
            "a list word of another language that is an ordinary word of this one is not a finding"
        )
    lines.append("verdict:")
    verdict = policy.scan(text)
    lines.append(format_verdict(verdict))
    lines += [f"  note: {note}" for note in verdict.notes]  # what cleared a finding (place names)
    return "\n".join(lines)


def _scan(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        policy = load_policy(args.policy, allow_paths=args.allow_paths)
        if getattr(args, "explain", False):
            print(explain(policy, args.text), file=out)
            return 0
        verdict = policy.scan(args.text, slot=args.slot)
    except (PolicyError, BackendError) as exc:
        print(f"error: {exc}", file=err)
        return 2
    print(verdict.to_json(indent=2) if args.json else format_verdict(verdict), file=out)
    return 0


def _train_classifier(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    import json as _json

    from safetext.policy.charngram import train_default
    from safetext.policy.normalize import normalize_chars, tokenize
    from safetext.policy.schema import NormalizationConfig

    out, err = out or sys.stdout, err or sys.stderr
    config = NormalizationConfig()
    exclude: set[str] = set()
    for path in args.exclude_prompts:
        try:
            lines = open(path, encoding="utf-8").read().splitlines()
        except OSError as exc:
            print(f"error: cannot read --exclude-prompts file '{path}': {exc}", file=err)
            return 2
        for line in lines:
            if line.strip():
                prompt = _json.loads(line)["prompt"] if line.lstrip().startswith("{") else line
                exclude |= {t.text for t in tokenize(normalize_chars(prompt, config), config)}
    report = train_default(
        args.out, seed=args.seed, epochs=args.epochs, mutations=args.mutations, exclude=exclude, sample=args.sample
    )
    print(_json.dumps(report, indent=2), file=out)
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
    scan.add_argument("--explain", action="store_true", help="show the normalization chain and each backend's evidence")
    scan.set_defaults(func=_scan)

    train = subparsers.add_parser("train-classifier", help="train the charngram classifier (reproducible for a seed)")
    train.add_argument("--out", default="safetext/models/charngram", help="folder for model.safetensors and config.json")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epochs", type=int, default=4)
    train.add_argument("--mutations", type=int, default=12, help="generated variants per list word")
    train.add_argument("--sample", type=int, default=None, help="train on this many list words only (quick check)")
    train.add_argument(
        "--exclude-prompts", nargs="*", default=[],
        help="JSONL/text prompt files whose words are kept out of the training data (the evaluation sets)",
    )
    train.set_defaults(func=_train_classifier)

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
