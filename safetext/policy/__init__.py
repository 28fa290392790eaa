"""What may not be written into an image: policies, evasion-aware detection, explainable verdicts.

>>> from safetext.policy import load_policy
>>> policy = load_policy("default")           # or a YAML path, or None
>>> verdict = policy.scan('A red sign that says "sh1t".')
>>> verdict.action.value, verdict.findings[0].normalized
('neutralize', 'shit')
"""

from safetext.policy import charngram as _charngram  # noqa: F401  (registers the shipped classifier)
from safetext.policy import classifiers as _classifiers  # noqa: F401  (registers the optional backends)
from safetext.policy.backends import (
    ClassifierBackend,
    Detection,
    ScanDocument,
    SegmentClassifier,
    register_backend,
    registered_backends,
)
from safetext.policy.engine import Policy
from safetext.policy.loader import (
    PolicyFileError,
    lint_policy_file,
    load_policy,
    load_policy_file,
    scan_prompt,
    shipped_policies,
)
from safetext.policy.rendered import find_rendered_spans
from safetext.policy.schema import PolicyConfig, policy_json_schema
from safetext.policy.verdict import Action, Finding, Verdict

__all__ = [
    "Action",
    "ClassifierBackend",
    "Detection",
    "Finding",
    "Policy",
    "PolicyConfig",
    "PolicyFileError",
    "ScanDocument",
    "SegmentClassifier",
    "Verdict",
    "find_rendered_spans",
    "lint_policy_file",
    "load_policy",
    "load_policy_file",
    "policy_json_schema",
    "register_backend",
    "registered_backends",
    "scan_prompt",
    "shipped_policies",
]
