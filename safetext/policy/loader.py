"""Load policies from YAML: ``${ENV:default}`` interpolation, errors that point at ``file:line:column``.

The YAML is composed to nodes first so every value keeps its position; pydantic validation errors
are mapped back through those positions, and each message ends with how to fix it::

    policies/mine.yaml:7:5: rules.0.acton: unknown key 'acton'. Fix: remove it or use one of
    action, category, id, outside_rendered, scope, terms, threshold (did you mean 'action'?)

``load_policy`` accepts a shipped policy name (``"default"``, ``"strict"``, ``"permissive"``), a file
path, a mapping, a :class:`PolicyConfig`, a :class:`Policy` or ``None`` (the default policy).
"""

from __future__ import annotations

import difflib
import os
import re
import threading
import typing
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ValidationError

from safetext.errors import BackendError, PolicyError
from safetext.policy.engine import SHIPPED_DIR, LocatedPolicyError, Policy
from safetext.policy.schema import PolicyConfig
from safetext.policy.verdict import Verdict

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_CACHE_SIZE = 16
_cache: "OrderedDict[tuple, Policy]" = OrderedDict()
_cache_lock = threading.Lock()
Loc = tuple[Any, ...]


class PolicyFileError(PolicyError):
    """A policy file is invalid; ``messages`` holds one ``file:line:col: ...`` line per problem."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


def shipped_policies() -> tuple[str, ...]:
    """Names of the policies shipped in ``safetext/policies`` (``default``, ``permissive``, ``strict``)."""
    return tuple(sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml")))


def _where(filename: str, mark: yaml.Mark | None) -> str:
    if mark is None:
        return filename
    return f"{filename}:{mark.line + 1}:{mark.column + 1}"


def interpolate_env(value: str, filename: str = "<policy>", mark: yaml.Mark | None = None) -> str:
    """Replace ``${VAR}`` and ``${VAR:default}`` with environment values.

    Raises:
        PolicyError: ``${VAR}`` without a default and ``VAR`` is unset.

    Example:
        >>> interpolate_env("${SAFETEXT_UNSET_EXAMPLE:fallback}")
        'fallback'
    """

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found is not None:
            return found
        if default is not None:
            return default
        raise PolicyFileError(
            [f"{_where(filename, mark)}: environment variable '{name}' is not set. "
             f"Fix: export {name}=... or give a default: ${{{name}:value}}"]
        )

    return _ENV.sub(substitute, value)


class _Reader:
    """Turns a YAML node tree into plain Python while recording every value's position."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.marks: dict[Loc, yaml.Mark] = {}
        self._constructor = yaml.SafeLoader("")

    def read(self, node: yaml.Node, loc: Loc = ()) -> Any:
        self.marks[loc] = node.start_mark
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self._scalar(key_node, loc)
                if not isinstance(key, str) or key == "<<":
                    raise PolicyFileError(
                        [f"{_where(self.filename, key_node.start_mark)}: key {key!r} is not a plain name. "
                         "Fix: use string keys (YAML merge keys '<<' are not supported)"]
                    )
                if key in result:
                    raise PolicyFileError(
                        [f"{_where(self.filename, key_node.start_mark)}: duplicate key '{key}'. Fix: keep one of them"]
                    )
                self.marks[loc + (key, "<key>")] = key_node.start_mark
                result[key] = self.read(value_node, loc + (key,))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.read(item, loc + (i,)) for i, item in enumerate(node.value)]
        return self._scalar(node, loc)

    def _scalar(self, node: yaml.Node, loc: Loc) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise PolicyFileError([f"{_where(self.filename, node.start_mark)}: a key must be a scalar. Fix: use a plain name"])
        if node.tag == "tag:yaml.org,2002:str":
            return interpolate_env(node.value, self.filename, node.start_mark)
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise PolicyFileError([f"{_where(self.filename, node.start_mark)}: {exc}. Fix: use a plain YAML value"]) from exc


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at ``loc`` (for 'allowed keys' hints)."""
    model: type[BaseModel] | None = PolicyConfig
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _unwrap_model(field.annotation)
    return model


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _hint(error: Mapping[str, Any]) -> str:
    kind, loc = error["type"], tuple(error["loc"])
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = _model_at(loc[:-1])
        allowed = sorted(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(key, allowed, n=1)
        guess = f" (did you mean '{close[0]}'?)" if close else ""
        return f"remove it or use one of {', '.join(allowed)}{guess}"
    if kind == "missing":
        return f"add '{loc[-1]}:'" if loc else "add the missing key"
    if kind in ("literal_error", "enum"):
        return "use one of the listed values"
    if kind == "string_pattern_mismatch":
        return "use only the characters the pattern allows (ids: lower-case letters, digits, '-', '_', '.')"
    if kind in ("value_error", "assertion_error"):
        return ""  # our validators put the fix in the message itself
    return "change the value to the expected type/range"


def _message(error: Mapping[str, Any]) -> str:
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix):]
    if error["type"] == "extra_forbidden":
        message = f"unknown key '{error['loc'][-1]}'"
    return message


def _locate(marks: Mapping[Loc, yaml.Mark], loc: Loc, key: bool) -> yaml.Mark | None:
    if key and loc + ("<key>",) in marks:
        return marks[loc + ("<key>",)]
    if key and loc[:-1] + (loc[-1], "<key>") in marks:
        return marks[loc[:-1] + (loc[-1], "<key>")]
    probe = loc
    while probe:
        if probe in marks:
            return marks[probe]
        probe = probe[:-1]
    return marks.get(())


def validation_messages(exc: ValidationError, filename: str, marks: Mapping[Loc, yaml.Mark]) -> list[str]:
    """One ``file:line:col: loc: message. Fix: hint`` line per pydantic error."""
    messages = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        mark = _locate(marks, loc, key=error["type"] == "extra_forbidden")
        where = ".".join(str(part) for part in loc) or "(top level)"
        hint = _hint(error)
        suffix = f". Fix: {hint}" if hint else ""
        messages.append(f"{_where(filename, mark)}: {where}: {_message(error)}{suffix}")
    return messages


def parse_policy_text(text: str, filename: str = "<policy>") -> tuple[PolicyConfig, dict[Loc, yaml.Mark]]:
    """Validate policy YAML text.

    Returns:
        The :class:`PolicyConfig` and the position of every value (for later located errors).

    Raises:
        PolicyFileError: syntax error, unset variable or invalid field, with ``file:line:col``.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        message = f"{_where(filename, mark)}: YAML syntax error: {problem}. Fix: correct the YAML at this position"
        raise PolicyFileError([message]) from exc
    except yaml.YAMLError as exc:
        raise PolicyFileError([f"{filename}: YAML error: {exc}. Fix: correct the YAML"]) from exc
    if node is None:
        raise PolicyFileError([f"{filename}:1:1: the policy file is empty. Fix: start from safetext/policies/default.yaml"])
    reader = _Reader(filename)
    data = reader.read(node)
    if not isinstance(data, dict):
        raise PolicyFileError(
            [f"{_where(filename, node.start_mark)}: a policy must be a mapping of keys, got {type(data).__name__}. "
             "Fix: start from safetext/policies/default.yaml"]
        )
    try:
        return PolicyConfig.model_validate(data), reader.marks
    except ValidationError as exc:
        raise PolicyFileError(validation_messages(exc, filename, reader.marks)) from None


def _compile(config: PolicyConfig, base_dir: Path, filename: str, marks: Mapping[Loc, yaml.Mark]) -> Policy:
    try:
        return Policy(config, base_dir=base_dir, source=filename)
    except LocatedPolicyError as exc:
        where = _where(filename, _locate(marks, exc.loc, False))
        raise PolicyFileError([f"{where}: {'.'.join(map(str, exc.loc))}: {exc.detail}"]) from exc
    except BackendError as exc:
        loc = getattr(exc, "loc", ("backends",))
        raise BackendError(f"{_where(filename, _locate(marks, loc, False))}: {'.'.join(map(str, loc))}: {exc}") from exc


def load_policy_file(path: str | os.PathLike[str], *, use_cache: bool = True) -> Policy:
    """Load and compile a policy file (see :func:`load_policy`)."""
    target = Path(path)
    filename = str(path)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PolicyError(
            f"policy file '{filename}' does not exist; fix the path or use one of {', '.join(shipped_policies())}"
        ) from exc
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise PolicyError(f"policy file '{filename}' is not a UTF-8 text file; pass a YAML policy file") from exc
    key = None
    if use_cache:
        env = tuple((name, os.environ.get(name)) for name in sorted({m[0] for m in _ENV.findall(text)}))
        key = (str(target.resolve()), text, env)
        with _cache_lock:
            if key in _cache:
                _cache.move_to_end(key)
                return _cache[key]
    config, marks = parse_policy_text(text, filename)
    policy = _compile(config, target.resolve().parent, filename, marks)
    if key is not None:
        with _cache_lock:
            _cache[key] = policy
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return policy


def load_policy(policy: "Policy | PolicyConfig | Mapping[str, Any] | str | os.PathLike[str] | None" = None) -> Policy:
    """Get a compiled :class:`Policy`.

    Args:
        policy: ``None`` (the shipped ``default``), a shipped policy name (``"default"``,
            ``"strict"``, ``"permissive"``), a YAML file path, a mapping with the file's content, a
            :class:`PolicyConfig`, or a :class:`Policy` (returned as is).

    Returns:
        The compiled, immutable policy. Files are cached by path, content and the environment
        variables they reference, so repeated loads are cheap.

    Raises:
        PolicyError: unknown name, missing file, invalid YAML or fields (``file:line:col`` messages).
        BackendError: a backend named by the policy is unknown or cannot load.

    Example:
        >>> from safetext.policy import load_policy
        >>> load_policy("strict").name
        'strict'
    """
    if policy is None:
        policy = "default"
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, PolicyConfig):
        return Policy(policy)
    if isinstance(policy, Mapping):
        try:
            config = PolicyConfig.model_validate(dict(policy))
        except ValidationError as exc:
            raise PolicyFileError(validation_messages(exc, "<dict>", {})) from None
        return _compile(config, SHIPPED_DIR, "<dict>", {})
    if isinstance(policy, (str, os.PathLike)):
        candidate = Path(policy)
        if candidate.is_file():
            return load_policy_file(candidate)
        name = str(policy)
        if _NAME.match(name) and (SHIPPED_DIR / f"{name}.yaml").is_file():
            return load_policy_file(SHIPPED_DIR / f"{name}.yaml")
        raise PolicyError(
            f"policy {name!r} is neither a file nor a shipped policy; use a YAML path or one of: "
            f"{', '.join(shipped_policies())}"
        )
    raise PolicyError(
        f"load_policy() got {type(policy).__name__}; pass a policy name, a YAML path, a mapping, a PolicyConfig or a Policy"
    )


def lint_policy_file(path: str | os.PathLike[str]) -> list[str]:
    """Every problem of a policy file as ``file:line:col: ...`` lines (empty when it is valid).

    The file is fully compiled (word lists read, backends loaded), so a clean lint means the
    policy will load.
    """
    try:
        load_policy_file(path, use_cache=False)
    except PolicyFileError as exc:
        return list(exc.messages)
    except (PolicyError, BackendError) as exc:
        return [str(exc)]
    return []


def scan_prompt(
    text: str,
    policy: "Policy | PolicyConfig | Mapping[str, Any] | str | os.PathLike[str] | None" = None,
    slot: str = "prompt",
) -> Verdict:
    """Scan one prompt with a policy (``None`` = the shipped default).

    Args:
        text: the prompt.
        policy: anything :func:`load_policy` accepts.
        slot: the pipeline argument the prompt belongs to.

    Returns:
        The :class:`~safetext.policy.verdict.Verdict`.

    Example:
        >>> from safetext.policy import scan_prompt
        >>> verdict = scan_prompt("A protest sign that says f.u.c.k")
        >>> verdict.sanitized_prompt != verdict.prompt, verdict.findings[0].normalizations
        (True, ('separators',))
    """
    return load_policy(policy).scan(text, slot=slot)
