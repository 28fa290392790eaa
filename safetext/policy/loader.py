"""Load policies from YAML: ``${ENV:default}`` interpolation, errors that point at ``file:line:column``.

The YAML is composed to nodes first so every value keeps its position; pydantic validation errors
are mapped back through those positions, and each message ends with how to fix it::

    policies/mine.yaml:7:5: rules.0.acton: unknown key 'acton'. Fix: remove it or use one of
    action, category, id, outside_rendered, scope, terms, threshold (did you mean 'action'?)

``load_policy`` accepts a shipped policy name (``"default"``, ``"strict"``, ``"permissive"``), a file
path, a mapping, a :class:`PolicyConfig`, a :class:`Policy` or ``None`` (the default policy).

Safe by default (a policy file is data, and whoever can edit it should not be able to read the host
or stall the loader):

* list, exclude, allow-list, places and replacement paths must stay inside the policy's folder or safetext's
  shipped ``policies`` folder: absolute paths, ``~`` and ``..`` are refused, and so is a symlink that
  leads out. ``allow_paths=True`` (``--allow-paths`` on the command line) lifts this for trusted files;
* every file read (the policy and its lists) must be a regular file under a size cap
  (:data:`MAX_POLICY_BYTES`, :data:`MAX_LIST_BYTES`): a directory, FIFO or device is refused
  before it is opened for reading;
* YAML nesting is limited to :data:`MAX_DEPTH` levels, aliases to :data:`MAX_ALIASES`, and the
  expanded document to :data:`MAX_NODES` values (an alias bomb is refused, not expanded);
* ``${VAR}`` is expanded only in the fields the schema marks as environment-expandable
  (:func:`safetext.policy.schema.env_expandable_fields`); anywhere else it is an error, so an
  environment secret can never be copied into a description, a term or a replacement;
* every failure is a :class:`PolicyError` whose message starts with ``file:line:column``.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import sys
import threading
import typing
from collections import OrderedDict
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ValidationError

from safetext.errors import BackendError, PolicyError
from safetext.policy.engine import SHIPPED_DIR, LocatedPolicyError, Policy, resolve_policy_path
from safetext.policy.schema import ENV_MARK, PolicyConfig, env_expandable_fields
from safetext.policy.verdict import Verdict

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_CACHE_SIZE = 16
_cache: "OrderedDict[tuple, Policy]" = OrderedDict()
_cache_lock = threading.Lock()
Loc = tuple[Any, ...]

#: Largest policy file read, in bytes.
MAX_POLICY_BYTES = 1 << 20
#: Largest word list, allow list or replacement list read, in bytes.
MAX_LIST_BYTES = 16 << 20
#: Deepest nesting of YAML mappings and sequences in a policy file.
MAX_DEPTH = 32
#: Most aliases (``*name``) in a policy file.
MAX_ALIASES = 64
#: Most values in a policy after aliases are expanded.
MAX_NODES = 100_000
#: OCR backends safetext registers itself (checked without importing the OCR code).
BUILTIN_OCR_BACKENDS = ("easyocr", "rapidocr")


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


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting limit and an alias limit, checked while composing.

    The composer recurses once per nesting level (5,000 levels were a RecursionError) and shares
    aliased nodes, which :class:`_Reader` would expand (an alias bomb was a MemoryError).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise _LimitError(mark, f"more than {MAX_ALIASES} YAML aliases (*name). Fix: write the values out")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _LimitError(mark, f"YAML nesting deeper than {MAX_DEPTH} levels. Fix: flatten the file")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _LimitError(Exception):
    def __init__(self, mark: yaml.Mark | None, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


def _env_allowed(loc: Loc) -> bool:
    """True when the value at ``loc`` lies in a field the schema marks as environment-expandable."""
    model: type[BaseModel] | None = PolicyConfig
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None:
            return False
        field = model.model_fields.get(part)
        if field is None:
            return False
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get(ENV_MARK):
            return True
        model = _unwrap_model(field.annotation)
    return False


class _Reader:
    """Turns a YAML node tree into plain Python while recording every value's position."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.marks: dict[Loc, yaml.Mark] = {}
        self._constructor = yaml.SafeLoader("")
        self._nodes = 0

    def read(self, node: yaml.Node, loc: Loc = ()) -> Any:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise PolicyFileError(
                [f"{_where(self.filename, node.start_mark)}: the policy expands to more than {MAX_NODES} values "
                 "(YAML aliases repeating large blocks). Fix: write the values out once"]
            )
        self.marks[loc] = node.start_mark
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self._scalar(key_node, loc, is_key=True)
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

    def _scalar(self, node: yaml.Node, loc: Loc, is_key: bool = False) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise PolicyFileError([f"{_where(self.filename, node.start_mark)}: a key must be a scalar. Fix: use a plain name"])
        if node.tag == "tag:yaml.org,2002:str":
            if not _ENV.search(node.value):
                return node.value
            if not is_key and _env_allowed(loc):
                return interpolate_env(node.value, self.filename, node.start_mark)
            field = ".".join(str(part) for part in loc) or "(top level)"
            raise PolicyFileError(
                [f"{_where(self.filename, node.start_mark)}: {field}: '${{...}}' is expanded only in "
                 f"{', '.join(env_expandable_fields())}. Fix: write the value itself here (environment "
                 "values are never copied into other fields)"]
            )
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
    loader = _LimitedLoader(text)
    try:
        node = loader.get_single_node()
    except _LimitError as exc:
        raise PolicyFileError([f"{_where(filename, exc.mark)}: {exc.message}"]) from None
    except RecursionError:  # a safety net: the depth limit stops nesting long before the stack ends
        raise PolicyFileError([f"{filename}: YAML nesting too deep. Fix: flatten the file"]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        message = f"{_where(filename, mark)}: YAML syntax error: {problem}. Fix: correct the YAML at this position"
        raise PolicyFileError([message]) from exc
    except yaml.YAMLError as exc:
        raise PolicyFileError([f"{filename}: YAML error: {exc}. Fix: correct the YAML"]) from exc
    finally:
        loader.dispose()
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


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def read_regular_file(path: str | os.PathLike[str], limit: int, what: str = "file") -> bytes:
    """The bytes of ``path``, refusing anything but a regular file of at most ``limit`` bytes.

    The file is opened non-blocking and checked on the open descriptor, so a FIFO cannot stall the
    caller and a file swapped for a device after a check is still refused.

    Args:
        path: the file.
        limit: largest size accepted, in bytes.
        what: what the file is, for messages ("policy file", "word list").

    Raises:
        PolicyError: missing, not a regular file, unreadable or over ``limit``.
    """
    fd = _open_regular(path, limit, what)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise PolicyError(f"{what} '{path}' is larger than {limit} bytes; split it or shorten it")
    return data


def _open_regular(path: str | os.PathLike[str], limit: int, what: str) -> int:
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise PolicyError(f"{what} '{path}' does not exist; fix the path") from exc
    except OSError as exc:
        raise PolicyError(f"{what} '{path}' cannot be opened ({exc.strerror}); point it at a readable file") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PolicyError(f"{what} '{path}' is {_file_kind(info.st_mode)}, not a regular file; point it at a text file")
        if info.st_size > limit:
            raise PolicyError(f"{what} '{path}' has {info.st_size} bytes, over the limit of {limit}; split or shorten it")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _path_fields(config: PolicyConfig) -> list[tuple[Loc, str]]:
    """Every file path a policy names, with its location in the file."""
    fields: list[tuple[Loc, str]] = []
    for index, entry in enumerate(config.lists):
        fields.append((("lists", index, "path"), entry.path))
        fields.extend((("lists", index, "exclude", j), path) for j, path in enumerate(entry.exclude))
    fields.extend((("allow", "lists", j), path) for j, path in enumerate(config.allow.lists))
    fields.extend((("allow", "places", j), path) for j, path in enumerate(config.allow.places))
    fields.append((("replacement", "path"), config.replacement.path))
    return fields


def _inside(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _check_paths(config: PolicyConfig, base_dir: Path, allow_paths: bool) -> None:
    """Refuse list paths that leave the policy's folder and the shipped folder, and non-regular files.

    Raises:
        LocatedPolicyError: with the field's location.
    """
    roots = (base_dir.resolve(), SHIPPED_DIR.resolve())
    fix = ("Fix: copy the file next to the policy and name it relatively, or load a trusted policy with "
           "allow_paths=True (safetext ... --allow-paths)")
    for loc, raw in _path_fields(config):
        if not allow_paths:
            posix, windows = PurePosixPath(raw), PureWindowsPath(raw)
            if raw.startswith("~"):
                raise LocatedPolicyError(loc, f"path '{raw}' starts with '~' (a home folder). {fix}")
            if posix.is_absolute() or windows.is_absolute() or windows.drive:
                raise LocatedPolicyError(loc, f"path '{raw}' is absolute; only files in the policy's folder or "
                                              f"safetext's shipped lists may be named. {fix}")
            if ".." in posix.parts or ".." in windows.parts:
                raise LocatedPolicyError(loc, f"path '{raw}' climbs out of the policy's folder with '..'. {fix}")
        target = resolve_policy_path(raw, base_dir)
        if not target.exists() and not target.is_symlink():
            continue  # Policy() reports the missing file with its location
        if not allow_paths and not _inside(target.resolve(), roots):
            raise LocatedPolicyError(loc, f"path '{raw}' leads outside the policy's folder (through a symbolic link). {fix}")
        try:
            os.close(_open_regular(target, MAX_LIST_BYTES, "list file"))
        except PolicyError as exc:
            raise LocatedPolicyError(loc, str(exc)) from None


def _check_ocr(config: PolicyConfig) -> None:
    """Refuse an unknown ``verification.ocr`` at load time (not at the first generation)."""
    name = config.verification.ocr
    if name in BUILTIN_OCR_BACKENDS:
        return  # no need to import the OCR code to know these
    # Other names can only have been registered by code that imported the OCR module already.
    ocr_module = sys.modules.get("safetext.scoring.ocr")
    known = ocr_module.registered_ocr_backends() if ocr_module is not None else BUILTIN_OCR_BACKENDS
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        guess = f" (did you mean '{close[0]}'?)" if close else ""
        raise LocatedPolicyError(
            ("verification", "ocr"),
            f"unknown OCR backend '{name}'{guess}; registered: {', '.join(known)}. Fix: use one of them or register "
            "yours with safetext.scoring.register_ocr_backend() before loading the policy",
        )


def _compile(config: PolicyConfig, base_dir: Path, filename: str, marks: Mapping[Loc, yaml.Mark],
             allow_paths: bool = False) -> Policy:
    try:
        _check_paths(config, base_dir, allow_paths)
        _check_ocr(config)
        return Policy(config, base_dir=base_dir, source=filename)
    except LocatedPolicyError as exc:
        where = _where(filename, _locate(marks, exc.loc, False))
        raise PolicyFileError([f"{where}: {'.'.join(map(str, exc.loc))}: {exc.detail}"]) from exc
    except BackendError as exc:
        loc = getattr(exc, "loc", ("backends",))
        raise BackendError(f"{_where(filename, _locate(marks, loc, False))}: {'.'.join(map(str, loc))}: {exc}") from exc


def load_policy_file(path: str | os.PathLike[str], *, use_cache: bool = True, allow_paths: bool = False) -> Policy:
    """Load and compile a policy file (see :func:`load_policy`).

    Args:
        path: the YAML file.
        use_cache: reuse a policy compiled from the same path, content and environment.
        allow_paths: let list paths be absolute, start with ``~``, use ``..`` or lead anywhere (only for
            trusted policy files).
    """
    target = Path(path)
    filename = str(path)
    try:
        data = read_regular_file(target, MAX_POLICY_BYTES, "policy file")
    except PolicyError as exc:
        if not target.exists():
            raise PolicyError(
                f"policy file '{filename}' does not exist; fix the path or use one of {', '.join(shipped_policies())}"
            ) from None
        raise PolicyFileError([f"{filename}: {exc}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy file '{filename}' is not a UTF-8 text file; pass a YAML policy file") from exc
    key = None
    if use_cache:
        env = tuple((name, os.environ.get(name)) for name in sorted({m[0] for m in _ENV.findall(text)}))
        key = (str(target.resolve()), text, env, allow_paths)
        with _cache_lock:
            if key in _cache:
                _cache.move_to_end(key)
                return _cache[key]
    config, marks = parse_policy_text(text, filename)
    policy = _compile(config, target.resolve().parent, filename, marks, allow_paths)
    if key is not None:
        with _cache_lock:
            _cache[key] = policy
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return policy


def load_policy(
    policy: "Policy | PolicyConfig | Mapping[str, Any] | str | os.PathLike[str] | None" = None,
    *,
    allow_paths: bool = False,
) -> Policy:
    """Get a compiled :class:`Policy`.

    Args:
        policy: ``None`` (the shipped ``default``), a shipped policy name (``"default"``,
            ``"strict"``, ``"permissive"``), a YAML file path, a mapping with the file's content, a
            :class:`PolicyConfig`, or a :class:`Policy` (returned as is).
        allow_paths: let the policy's list paths leave its folder (absolute, ``~``, ``..``); off by
            default so a policy file cannot read arbitrary files. A :class:`PolicyConfig` is code,
            not a file, and is compiled as given.

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
        return _compile(config, SHIPPED_DIR, "<dict>", {}, allow_paths)
    if isinstance(policy, (str, os.PathLike)):
        candidate = Path(policy)
        if candidate.exists() and not candidate.is_dir():
            return load_policy_file(candidate, allow_paths=allow_paths)
        name = str(policy)
        if _NAME.match(name) and (SHIPPED_DIR / f"{name}.yaml").is_file():
            return load_policy_file(SHIPPED_DIR / f"{name}.yaml")
        if candidate.is_dir():
            raise PolicyError(f"policy '{name}' is a directory; pass a YAML policy file")
        raise PolicyError(
            f"policy {name!r} is neither a file nor a shipped policy; use a YAML path or one of: "
            f"{', '.join(shipped_policies())}"
        )
    raise PolicyError(
        f"load_policy() got {type(policy).__name__}; pass a policy name, a YAML path, a mapping, a PolicyConfig or a Policy"
    )


def lint_policy_file(path: str | os.PathLike[str], *, allow_paths: bool = False) -> list[str]:
    """Every problem of a policy file as ``file:line:col: ...`` lines (empty when it is valid).

    The file is fully compiled (word lists read, backend and OCR names checked, backends loaded), so a
    clean lint means the policy will load.

    Args:
        path: the policy file.
        allow_paths: as for :func:`load_policy`.
    """
    try:
        load_policy_file(path, use_cache=False, allow_paths=allow_paths)
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
