"""The README's quick start and .ci/run stay in step."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci, ".ci/run must run the README's test command verbatim"
    assert "export CI=true" in ci


def test_quick_start_fuses_the_committed_sample() -> None:
    fuse = _quick_start_commands()[0]
    for arg in re.findall(r"--(?:vis|ir) (\S+)", fuse):
        assert (ROOT / arg).is_file(), arg
    assert 'torch==2.13.0' in fuse
