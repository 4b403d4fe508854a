"""`dspy-run validate` as a whole process: one line per problem, exit codes, JSON, no heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from policyfixtures import POLICIES, ROOT, invalid_corpus, write_ten_megabytes

DSPY_RUN = str(Path(sys.executable).parent / "dspy-run")


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DSPY_RUN, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_valid_policies_exit_zero_silently():
    """Every shipped policy is valid: exit 0 and nothing on stdout."""
    files = sorted(str(p) for p in POLICIES.glob("*.yaml"))
    assert len(files) >= 2
    result = run("validate", *files)
    assert (result.returncode, result.stdout) == (0, "")


def test_whole_invalid_corpus_in_one_run(tmp_path):
    """One run over every invalid fixture (and a 10 MB file) exits 1 with each expected FILE:LINE:COL line and no traceback."""
    cases = invalid_corpus()
    huge = write_ten_megabytes(tmp_path)
    result = run("validate", *(str(c.path) for c in cases), str(huge))
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for case in cases:
        prefix = f"{case.path}:{case.location}: " if case.location else f"{case.path}:"
        assert any(line.startswith(prefix) and case.fragment in line for line in lines), case.name
    assert any(line.startswith(f"{huge}:1:1: ") and "1 MiB" in line for line in lines)
    for line in lines:  # every line is FILE:LINE:COL: message
        file, line_no, col, message = line.split(":", 3)
        assert Path(file).exists() and int(line_no) >= 1 and int(col) >= 1 and message.startswith(" ")
    assert result.stderr.strip() == f"{len(cases) + 1} of {len(cases) + 1} policy file(s) invalid"


def test_one_bad_file_does_not_hide_the_others(tmp_path):
    """Valid and invalid files together: exit 1, problems only for the invalid one."""
    bad = ROOT / "tests" / "fixtures" / "invalid" / "unknown_key_typo.yaml"
    result = run("validate", str(POLICIES / "example.yaml"), str(bad), str(POLICIES / "prod.yaml"))
    assert result.returncode == 1
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == [str(bad)]


def test_warnings_are_printed_but_do_not_fail(tmp_path):
    """A warning line says `warning:` and the exit status stays 0."""
    path = tmp_path / "tight.yaml"
    path.write_text("version: 1\nmodel: {name: openai/gpt-4o-mini}\ntimeouts: {attempt_ms: 1000, total_ms: 1500}\n")
    result = run("validate", str(path))
    assert result.returncode == 0
    assert result.stdout.startswith(f"{path}:3:40: warning: in the worst case the chain takes")


def test_json_format_for_machines(tmp_path):
    """--format json gives one document with per-file validity and structured problems."""
    bad = ROOT / "tests" / "fixtures" / "invalid" / "zero_attempts.yaml"
    result = run("validate", "--format", "json", str(POLICIES / "example.yaml"), str(bad))
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["valid"] is False
    assert [f["valid"] for f in document["files"]] == [True, False]
    (problem,) = document["files"][1]["problems"]
    assert problem | {"message": None} == {
        "file": str(bad), "line": 6, "col": 17, "code": "out-of-range", "severity": "error", "message": None,
    }


def test_missing_file_is_reported_not_raised(tmp_path):
    """A path that does not exist is one problem line and exit 1."""
    result = run("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert result.stdout == f"{tmp_path / 'nope.yaml'}:1:1: no such file; check the path\n"


def test_no_files_is_a_usage_error():
    """validate without files is a command-line mistake: exit 2 from argparse."""
    assert run("validate").returncode == 2


def test_validate_never_imports_dspy_litellm_or_loguru():
    """The validate path imports neither DSPy, LiteLLM nor loguru (startup cost, pre-commit speed)."""
    code = (
        "import sys\n"
        "from runner.cli import main\n"
        f"rc = main(['validate', {str(POLICIES / 'prod.yaml')!r}, {str(ROOT / 'tests/fixtures/invalid/unsafe_regex.yaml')!r}])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('dspy', 'litellm', 'loguru', 'openai', 'httpx'))\n"
        "print(rc, heavy, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stderr.strip().splitlines()[-1] == "1 []"


def test_file_name_that_is_not_utf8_is_printed_back_as_its_bytes(tmp_path):
    """A file name with a non-UTF-8 byte is printed as its own bytes even on a strict UTF-8 stdout, not a traceback."""
    import os

    name = os.fsencode(tmp_path) + b"/bad\xff.yaml"
    with open(name, "wb") as handle:
        handle.write(b"version: 1\n")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    result = subprocess.run([DSPY_RUN, "validate", name], capture_output=True, env=env, timeout=60)
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    assert result.stdout.startswith(name + b":1:1: ")
