"""The policy reference page, generated from the schema so the docs never drift from the code.

``safetext policy reference > docs/policy_reference.md`` regenerates it; a test checks the committed
page equals :func:`policy_reference_markdown`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from safetext.policy.schema import PolicyConfig


def _type_name(annotation: Any) -> str:
    text = str(annotation) if getattr(annotation, "__args__", None) else (getattr(annotation, "__name__", None) or str(annotation))
    text = text.replace("|", "\\|")
    return text.replace("typing.", "").replace("safetext.policy.schema.", "").replace("safetext.policy.verdict.", "")


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
        return json.dumps([v.model_dump(mode="json") for v in value])
    if hasattr(value, "value"):
        value = value.value
    return json.dumps(value if not isinstance(value, tuple) else list(value))


def _section(model: type[BaseModel], path: str, seen: set[type]) -> list[str]:
    lines = [f"## `{path}`", "", (model.__doc__ or "").strip().split("\n\n")[0], "", "| key | type | default | description |", "|---|---|---|---|"]
    nested: list[tuple[type[BaseModel], str]] = []
    for name, field in model.model_fields.items():
        lines.append(f"| `{name}` | `{_type_name(field.annotation)}` | `{_default(field)}` | {field.description or ''} |")
        for candidate in _models_in(field.annotation):
            if candidate not in seen:
                seen.add(candidate)
                nested.append((candidate, f"{path}.{name}" if path != "policy" else name))
    lines.append("")
    for sub, sub_path in nested:
        lines.extend(_section(sub, sub_path, seen))
    return lines


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(_models_in(arg))
    return found


def policy_reference_markdown() -> str:
    """Markdown reference of every policy key: type, default, description."""
    header = [
        "# Policy reference",
        "",
        "Generated from the schema (`safetext policy reference`); do not edit by hand. The guide with",
        "examples is `docs/policy.md`; editors can validate files with `safetext/policies/policy.schema.json`.",
        "",
    ]
    return "\n".join(header + _section(PolicyConfig, "policy", {PolicyConfig})).rstrip() + "\n"
