"""The README says what the code does: the parameter table is the schema's, the layout is the
tracked files'."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from imgclf.params import markdown_table

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_the_parameter_table_is_the_schema():
    assert markdown_table() in README


def _layout() -> str:
    section = README[README.index("## Layout") :]
    return section[section.index("```") + 3 : section.index("```", section.index("```") + 3)]


def test_the_layout_names_every_tracked_file_and_only_those():
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True, check=True
    ).stdout.split()
    layout = _layout()
    product = [
        p for p in tracked
        if re.match(r"^(dags|include/imgclf|spark_tasks|benchmarks|tools|plugins)/.*\.py$", p)
        and not p.endswith("__init__.py")
    ]  # fmt: skip
    missing = [p for p in product if Path(p).name not in layout]
    assert not missing, f"files the README's layout does not name: {missing}"
    names = {Path(p).name for p in tracked}
    for mentioned in re.findall(r"[\w.-]+\.(?:py|toml|txt|yaml|j2)\b", layout):
        assert mentioned in names, f"the layout names {mentioned}, which is not tracked"
