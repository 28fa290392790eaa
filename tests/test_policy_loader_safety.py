"""Policy files written by a careless or hostile author: they get a ``file:line:col`` PolicyError, never
a crash, a hang, a read outside the policy's folder or an environment secret in a verdict."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from safetext.errors import PolicyError
from safetext.policy import PolicyFileError, lint_policy_file, load_policy
from safetext.policy import loader as loader_module
from tests.test_policy_loader import MINIMAL
REPO = Path(__file__).resolve().parents[1]


def _write(folder: Path, text: str, name: str = "policy.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _replacement(folder: Path, path: str) -> Path:
    return _write(folder, MINIMAL + f"replacement: {{path: '{path}'}}\n")


def test_absolute_replacement_path_cannot_read_host_files(tmp_path):
    policy_file = _replacement(tmp_path, "/etc/passwd")
    (message,) = lint_policy_file(policy_file)
    assert message.startswith(f"{policy_file}:7:21: replacement.path: path '/etc/passwd' is absolute;")
    assert "allow_paths=True" in message
    with pytest.raises(PolicyFileError) as caught:
        load_policy(policy_file)
    assert isinstance(caught.value, PolicyError) and "root:" not in str(caught.value)


def test_opting_in_lets_a_trusted_policy_name_any_file(tmp_path):
    words = tmp_path / "elsewhere" / "benign.txt"
    words.parent.mkdir()
    words.write_text("Lantern\n", encoding="utf-8")
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    policy_file = _replacement(policy_dir, str(words))
    with pytest.raises(PolicyFileError, match="is absolute"):
        load_policy(policy_file)
    policy = load_policy(policy_file, allow_paths=True)
    assert policy.scan('A sign that says "shit"').sanitized_prompt == 'A sign that says "Lantern"'


@pytest.mark.parametrize(
    "path, why",
    [
        ("../outside.txt", "climbs out of the policy's folder with '..'"),
        ("lists/../../outside.txt", "climbs out of the policy's folder with '..'"),
        ("~/words.txt", "starts with '~'"),
        ("C:\\\\words.txt", "is absolute"),
    ],
)
def test_paths_leaving_the_policy_folder_are_refused(tmp_path, path, why):
    folder = tmp_path / "policies"
    folder.mkdir()
    (tmp_path / "outside.txt").write_text("Lantern\n", encoding="utf-8")
    policy_file = _write(folder, MINIMAL.replace("lists/profanity_en.txt", path))
    (message,) = lint_policy_file(policy_file)
    assert message.startswith(f"{policy_file}:4:") and "lists.0.path" in message and why in message


def test_symlink_out_of_the_folder_is_refused(tmp_path):
    folder = tmp_path / "policies"
    folder.mkdir()
    (tmp_path / "secret.txt").write_text("Lantern\n", encoding="utf-8")
    (folder / "words.txt").symlink_to(tmp_path / "secret.txt")
    (message,) = lint_policy_file(_replacement(folder, "words.txt"))
    assert "replacement.path: path 'words.txt' leads outside the policy's folder" in message
    assert load_policy(_replacement(folder, "words.txt"), allow_paths=True).name == "mine"


def test_files_in_the_policy_folder_and_shipped_lists_still_load(tmp_path):
    (tmp_path / "mine.txt").write_text("zorp\n", encoding="utf-8")
    policy_file = _write(tmp_path, MINIMAL + "allow: {lists: [mine.txt, lists/allow_en.txt]}\n")
    assert lint_policy_file(policy_file) == []


def test_a_directory_as_list_path_is_a_located_error(tmp_path):
    (tmp_path / "adir").mkdir()
    policy_file = _write(tmp_path, MINIMAL.replace("lists/profanity_en.txt", "adir"))
    (message,) = lint_policy_file(policy_file)
    assert message.startswith(f"{policy_file}:4:") and "is a directory, not a regular file" in message


@pytest.mark.timeout(20)
def test_a_fifo_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "words.fifo")
    (message,) = lint_policy_file(_write(tmp_path, MINIMAL.replace("lists/profanity_en.txt", "words.fifo")))
    assert "lists.0.path" in message and "is a FIFO, not a regular file" in message
    os.mkfifo(tmp_path / "policy.fifo")
    with pytest.raises(PolicyFileError, match="is a FIFO, not a regular file"):
        load_policy(tmp_path / "policy.fifo")


@pytest.mark.timeout(20)
def test_dev_zero_is_refused_without_reading_it(tmp_path):
    policy_file = _write(tmp_path, MINIMAL.replace("lists/profanity_en.txt", "/dev/zero"))
    (message,) = lint_policy_file(policy_file, allow_paths=True)
    assert message.startswith(f"{policy_file}:4:") and "'/dev/zero' is a character device" in message
    with pytest.raises(PolicyFileError, match="is a character device, not a regular file"):
        load_policy("/dev/zero")


def test_oversized_list_and_policy_files_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(loader_module, "MAX_LIST_BYTES", 1000)
    (tmp_path / "big.txt").write_text("word\n" * 300, encoding="utf-8")
    (message,) = lint_policy_file(_write(tmp_path, MINIMAL.replace("lists/profanity_en.txt", "big.txt")))
    assert "lists.0.path" in message and "has 1500 bytes, over the limit of 1000" in message
    monkeypatch.setattr(loader_module, "MAX_POLICY_BYTES", 100)
    (message,) = lint_policy_file(_write(tmp_path, MINIMAL, "big_policy.yaml"))
    assert "over the limit of 100" in message


@pytest.mark.parametrize("style", ["flow", "block"])
def test_deep_nesting_is_a_located_error_not_a_recursion_error(tmp_path, style):
    if style == "flow":
        body = "[" * 5000 + "]" * 5000
    else:
        body = "\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 200)) + " " * 200 + "x"  # indentation grows n^2
    policy_file = _write(tmp_path, "name: deep\nrules: " + body + "\n")
    (message,) = lint_policy_file(policy_file)
    line = 2 if style == "flow" else 33  # where level 33 starts
    assert message.startswith(f"{policy_file}:{line}:") and "YAML nesting deeper than 32 levels" in message


@pytest.mark.timeout(20)
def test_an_alias_bomb_is_refused_not_expanded(tmp_path):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    policy_file = _write(tmp_path, "\n".join(lines) + "\n" + MINIMAL)
    (message,) = lint_policy_file(policy_file)
    assert message.startswith(f"{policy_file}:") and "more than 64 YAML aliases" in message
    few = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    few += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 10)]
    (message,) = lint_policy_file(_write(tmp_path, "\n".join(few) + "\n" + MINIMAL, "few.yaml"))
    assert "expands to more than 100000 values" in message


def test_env_is_expanded_only_in_marked_fields_and_never_reaches_a_verdict(tmp_path, monkeypatch):
    secret = "s3cret-token-0123456789abcdef"
    monkeypatch.setenv("SAFETEXT_API_TOKEN", secret)
    for field in ("description: ${SAFETEXT_API_TOKEN}", "name: ${SAFETEXT_API_TOKEN}",
                  "replacement: {mode: fixed, word: '${SAFETEXT_API_TOKEN}'}",
                  "allow: {terms: ['${SAFETEXT_API_TOKEN:x}']}"):
        text = MINIMAL.replace("name: mine\n", "") + field + "\n" if field.startswith("name") else MINIMAL + field + "\n"
        policy_file = _write(tmp_path, text)
        (message,) = lint_policy_file(policy_file)
        assert "'${...}' is expanded only in max_prompt_chars, backends[].params, verification.ocr_options" in message
        assert secret not in message and message.startswith(f"{policy_file}:")
    # the shipped policies use it where it is allowed
    monkeypatch.setenv("SAFETEXT_MAX_PROMPT_CHARS", "500")
    policy = load_policy(Path(loader_module.SHIPPED_DIR) / "default.yaml")
    assert policy.config.max_prompt_chars == 500
    verdict = policy.scan('A sign that says "shit"')
    assert secret not in verdict.to_json()


def test_unknown_ocr_and_backend_names_fail_lint_with_a_position(tmp_path):
    policy_file = _write(tmp_path, MINIMAL + "verification:\n  enabled: true\n  ocr: no_such_ocr\n")
    (message,) = lint_policy_file(policy_file)
    assert message.startswith(f"{policy_file}:9:8: verification.ocr: unknown OCR backend 'no_such_ocr'")
    assert "registered: easyocr, rapidocr" in message
    policy_file = _write(tmp_path, MINIMAL + "backends: [{name: no_such_backend}]\n")
    (message,) = lint_policy_file(policy_file)
    assert message.startswith(f"{policy_file}:7:") and "unknown backend 'no_such_backend'" in message


def test_policy_lint_command_does_not_import_torch(tmp_path):
    policy_file = _write(tmp_path, MINIMAL + "verification: {ocr: no_such_ocr}\n")
    code = ("import sys; from safetext.cli import main; rc = main(['policy', 'lint', sys.argv[1], "
            "'safetext/policies/default.yaml']); print(rc, sorted(m for m in ('torch', 'diffusers', 'fastapi') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(policy_file)], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stdout.strip().splitlines()[-1] == "1 []", done.stdout + done.stderr
    assert "verification.ocr: unknown OCR backend 'no_such_ocr'" in done.stderr
    assert "safetext/policies/default.yaml: ok" in done.stdout
