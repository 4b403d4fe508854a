"""The pre-commit hook: its own entry over the policies and the invalid corpus, and a real try-repo run."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from policyfixtures import INVALID, POLICIES, ROOT, invalid_corpus

BIN = Path(sys.executable).parent


def hook() -> dict:
    (only,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    return only


def run_entry(files: list[str]) -> subprocess.CompletedProcess[str]:
    """Run the hook's entry the way pre-commit does: entry words, then the file names."""
    words = shlex.split(hook()["entry"])
    words[0] = str(BIN / words[0])
    return subprocess.run([*words, *files], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_hook_definition():
    """The hook is dspy-run-validate, installed with language python, over YAML under a policies/ folder."""
    definition = hook()
    assert definition["id"] == "dspy-run-validate"
    assert definition["language"] == "python"
    assert definition["entry"] == "dspy-run validate"
    assert definition["types"] == ["yaml"]
    files = re.compile(definition["files"])
    for path in ("policies/prod.yaml", "policies/team/a.yml", "services/api/policies/x.yaml"):
        assert files.search(path), path
    for path in (".github/workflows/ci.yaml", "mypolicies.yaml", "policies/README.md", "notpolicies/x.yaml"):
        assert not files.search(path), path


def test_entry_passes_the_shipped_policies():
    """The hook's entry accepts every file under policies/."""
    files = [str(p.relative_to(ROOT)) for p in sorted(POLICIES.glob("*.y*ml"))]
    result = run_entry(files)
    assert (result.returncode, result.stdout) == (0, "")


def test_entry_fails_each_invalid_fixture_with_its_message():
    """The hook's entry fails on the invalid corpus, naming each file with its expected message."""
    cases = invalid_corpus()
    result = run_entry([str(c.path.relative_to(ROOT)) for c in cases])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    for case in cases:
        rel = case.path.relative_to(ROOT)
        prefix = f"{rel}:{case.location}: " if case.location else f"{rel}:"
        assert any(line.startswith(prefix) and case.fragment in line for line in result.stdout.splitlines()), case.name


def _pip_index_reachable() -> bool:
    """pre-commit installs the hook with pip: true when pip can see the project's build dependency."""
    result = subprocess.run(
        [str(BIN / "python"), "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed", "--quiet", "setuptools>=68"],
        capture_output=True, text=True, timeout=120,
    )
    return result.returncode == 0


def test_try_repo_in_a_fresh_git_repository(tmp_path):
    """`pre-commit try-repo` installs this repository's hook and fails a commit-to-be with a bad policy."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    if not _pip_index_reachable():
        pytest.skip("the package index is unreachable, so pre-commit cannot pip-install the hook")
    repo = tmp_path / "project"
    (repo / "policies").mkdir(parents=True)
    shutil.copy(POLICIES / "example.yaml", repo / "policies" / "ok.yaml")
    shutil.copy(INVALID / "unknown_key_typo.yaml", repo / "policies" / "bad.yaml")
    (repo / "other.yaml").write_text("not: [a, policy\n")  # outside policies/: the hook must not see it
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, env=env, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "init")
    result = subprocess.run(
        [str(BIN / "pre-commit"), "try-repo", str(ROOT), "dspy-run-validate", "--all-files"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 1, result.stdout[-2000:]
    assert "policies/bad.yaml:6:3: unknown key `max_atempts` in `retry`; did you mean `max_attempts`?" in result.stdout
    assert "ok.yaml" not in result.stdout and "other.yaml" not in result.stdout
