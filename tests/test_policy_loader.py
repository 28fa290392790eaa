"""Policy files: loading by name/path, ``${ENV:default}`` interpolation, errors that name file:line:column
and the fix, the committed JSON Schema, immutability."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from safetext.errors import BackendError, PolicyError
from safetext.policy import Policy, PolicyConfig, PolicyFileError, lint_policy_file, load_policy, shipped_policies
from safetext.policy.loader import interpolate_env, parse_policy_text
from safetext.policy.schema import policy_json_schema, policy_json_schema_text

SHIPPED = Path(__file__).resolve().parents[1] / "safetext" / "policies"

MINIMAL = """\
version: 1
name: mine
lists:
  - {path: lists/profanity_en.txt, category: profanity}
rules:
  - {id: profanity, category: profanity, action: neutralize}
"""


def _write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_shipped_policies_load_by_name_and_none_is_default():
    assert shipped_policies() == ("default", "permissive", "strict")
    assert load_policy(None) is load_policy("default")  # cached, immutable: safe to share
    for name in shipped_policies():
        policy = load_policy(name)
        assert policy.name == name and lint_policy_file(SHIPPED / f"{name}.yaml") == []


def test_load_from_path_mapping_config_and_policy(tmp_path):
    path = _write(tmp_path, MINIMAL)
    policy = load_policy(path)
    assert policy.name == "mine" and policy.scan("a sign that says shit").action.value == "neutralize"
    assert load_policy(str(path)).name == "mine"
    assert load_policy(policy) is policy
    from_mapping = load_policy({"name": "m", "rules": [{"id": "p", "category": "profanity", "terms": ["zorp"]}]})
    assert from_mapping.scan("zorp").findings[0].rule_id == "p"
    assert load_policy(policy.config).name == "mine"


def test_unknown_name_lists_shipped_policies():
    with pytest.raises(PolicyError, match=r"'nope' is neither a file nor a shipped policy.*default, permissive, strict"):
        load_policy("nope")
    with pytest.raises(PolicyError, match="load_policy\\(\\) got int"):
        load_policy(3)


def test_unknown_key_points_at_line_and_suggests_the_fix(tmp_path):
    path = _write(tmp_path, MINIMAL.replace("action: neutralize}", "acton: neutralize}"))
    with pytest.raises(PolicyFileError) as info:
        load_policy(path)
    assert info.value.messages == [
        f"{path}:6:42: rules.0.acton: unknown key 'acton'. Fix: remove it or use one of action, category, id, "
        "outside_rendered, scope, terms, threshold (did you mean 'action'?)"
    ]


def test_bad_values_point_at_their_line(tmp_path):
    path = _write(
        tmp_path,
        """\
        name: mine
        max_prompt_chars: -5
        rules:
          - id: Bad Id
            category: slurz
            action: nuke
        """,
    )
    messages = lint_policy_file(path)
    assert [m.split(": ", 2)[:2] for m in messages] == [
        [f"{path}:2:19", "max_prompt_chars"],
        [f"{path}:4:9", "rules.0.id"],
        [f"{path}:5:15", "rules.0.category"],
        [f"{path}:6:13", "rules.0.action"],
    ]
    assert "Input should be 'allow', 'log', 'neutralize' or 'block'. Fix: use one of the listed values" in messages[3]


def test_yaml_syntax_error_has_position(tmp_path):
    path = _write(tmp_path, "name: x\nrules:\n  - {id: a, category: profanity\n")
    (message,) = lint_policy_file(path)
    assert message.startswith(f"{path}:4:1: YAML syntax error: expected ',' or '}}'")
    assert message.endswith("Fix: correct the YAML at this position")


def test_duplicate_keys_and_non_mapping_files_are_rejected(tmp_path):
    dup = _write(tmp_path, "name: a\nrules: [{id: p, category: profanity, terms: [x]}]\nname: b\n", "dup.yaml")
    assert lint_policy_file(dup) == [f"{dup}:3:1: duplicate key 'name'. Fix: keep one of them"]
    listing = _write(tmp_path, "- a\n- b\n", "list.yaml")
    assert "a policy must be a mapping of keys, got list" in lint_policy_file(listing)[0]
    empty = _write(tmp_path, "", "empty.yaml")
    assert lint_policy_file(empty) == [f"{empty}:1:1: the policy file is empty. Fix: start from safetext/policies/default.yaml"]


def test_missing_list_file_points_at_the_path(tmp_path):
    path = _write(tmp_path, MINIMAL.replace("lists/profanity_en.txt", "lists/nope.txt"))
    (message,) = lint_policy_file(path)
    assert message.startswith(f"{path}:4:12: lists.0.path: word list '")
    assert "does not exist; fix the path" in message


def test_unknown_backend_lists_registered_ones_with_position(tmp_path):
    path = _write(tmp_path, MINIMAL + "backends:\n  - name: wordlist\n  - name: nope\n")
    with pytest.raises(BackendError) as info:
        load_policy(path)
    message = str(info.value)
    assert message.startswith(f"{path}:9:11: backends.1.name: unknown backend 'nope'; registered backends: ")
    assert "transformers, wordlist" in message


def test_validator_messages_carry_their_own_fix(tmp_path):
    path = _write(
        tmp_path,
        """\
        name: mine
        rules:
          - {id: p, category: profanity, scope: prompt, action: neutralize}
        replacement: {mode: fixed}
        """,
    )
    assert lint_policy_file(path) == [
        f"{path}:3:5: rules.0: rule 'p' has scope 'prompt' and action 'neutralize'; a whole prompt cannot be "
        "replaced by a benign word: use action 'block' or 'log', or scope 'spans'",
        f"{path}:4:14: replacement: replacement mode 'fixed' needs 'word: <benign word>'",
    ]


def test_list_category_without_rule_is_an_error(tmp_path):
    path = _write(tmp_path, MINIMAL.replace("category: profanity}\nrules", "category: slur}\nrules"))
    (message,) = lint_policy_file(path)
    assert "list 'lists/profanity_en.txt' has category 'slur' but no rule handles it" in message


def test_flagged_replacement_word_is_refused(tmp_path):
    path = _write(tmp_path, MINIMAL + "replacement: {mode: fixed, word: shit}\n")
    assert lint_policy_file(path) == [
        f"{path}:7:14: replacement: replacement word 'shit' is itself flagged by the policy; choose a benign word"
    ]


def test_env_interpolation_with_defaults(tmp_path, monkeypatch):
    path = _write(tmp_path, MINIMAL + "max_prompt_chars: ${POLICY_TEST_MAX:123}\n"
                  "verification: {ocr_options: {mode: 'for ${POLICY_TEST_MODE:crop}'}}\n")
    monkeypatch.delenv("POLICY_TEST_MAX", raising=False)
    monkeypatch.delenv("POLICY_TEST_MODE", raising=False)
    policy = load_policy(path)
    assert policy.config.max_prompt_chars == 123 and policy.config.verification.ocr_options == {"mode": "for crop"}
    monkeypatch.setenv("POLICY_TEST_MAX", "77")
    monkeypatch.setenv("POLICY_TEST_MODE", "full")
    reloaded = load_policy(path)  # the cache key includes referenced variables
    assert reloaded.config.max_prompt_chars == 77 and reloaded.config.verification.ocr_options == {"mode": "for full"}
    assert reloaded is not policy


def test_env_interpolation_without_default_must_be_set(tmp_path, monkeypatch):
    monkeypatch.delenv("POLICY_TEST_REQUIRED", raising=False)
    path = _write(tmp_path, MINIMAL + "max_prompt_chars: ${POLICY_TEST_REQUIRED}\n")
    assert lint_policy_file(path) == [
        f"{path}:7:19: environment variable 'POLICY_TEST_REQUIRED' is not set. "
        "Fix: export POLICY_TEST_REQUIRED=... or give a default: ${POLICY_TEST_REQUIRED:value}"
    ]
    assert interpolate_env("a ${POLICY_TEST_REQUIRED:b} c") == "a b c"


def test_env_value_is_validated_like_a_literal(tmp_path, monkeypatch):
    monkeypatch.setenv("POLICY_TEST_MAX", "lots")
    path = _write(tmp_path, MINIMAL + "max_prompt_chars: ${POLICY_TEST_MAX:10}\n")
    (message,) = lint_policy_file(path)
    assert message.startswith(f"{path}:7:19: max_prompt_chars: Input should be a valid integer")


def test_committed_json_schema_equals_generated():
    committed = (SHIPPED / "policy.schema.json").read_text(encoding="utf-8")
    assert committed == policy_json_schema_text(), "run: safetext policy schema > safetext/policies/policy.schema.json"
    schema = json.loads(committed)
    assert schema["title"] == "safetext policy" and "rules" in schema["required"]
    assert schema == policy_json_schema()


def test_policy_is_immutable():
    policy = load_policy("default")
    with pytest.raises(AttributeError, match="Policy is immutable"):
        policy.config = None
    with pytest.raises(Exception, match="frozen"):
        policy.config.name = "other"
    with pytest.raises(PolicyError, match="expects a PolicyConfig"):
        Policy({"name": "x"})


def test_parse_returns_positions_for_every_value():
    config, marks = parse_policy_text(MINIMAL, "m.yaml")
    assert isinstance(config, PolicyConfig)
    assert marks[("rules", 0, "action")].line == 5
