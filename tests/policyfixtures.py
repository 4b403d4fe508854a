"""The invalid-policy corpus and its expected messages, shared by the loader, CLI and pre-commit tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INVALID = ROOT / "tests" / "fixtures" / "invalid"
POLICIES = ROOT / "policies"


@dataclass(frozen=True)
class Expected:
    name: str
    location: str  # "LINE:COL", or "" when only the message matters (generated content)
    fragment: str

    @property
    def path(self) -> Path:
        return INVALID / f"{self.name}.yaml"


def invalid_corpus() -> list[Expected]:
    rows = []
    for line in (INVALID / "expected.tsv").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            rows.append(Expected(*line.split("\t")))
    return rows


def write_ten_megabytes(directory: Path) -> Path:
    """A 10 MB policy: valid YAML all the way, so only the size limit can refuse it."""
    path = directory / "huge.yaml"
    filler = "# " + "x" * 98 + "\n"
    path.write_text("version: 1\nmodel: {name: openai/gpt-4o-mini}\n" + filler * 105_000, encoding="utf-8")
    return path
