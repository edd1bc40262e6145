"""stack_debug_unmask_results shows secret-bearing results: it is for debugging on a host of one's own, so nothing
the repository runs (inventories, tests, CI, AWX objects, the benchmark) may turn it on."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SWITCH = re.compile(r"stack_debug_unmask_results\W{1,6}(true|yes|on|1)\b", re.IGNORECASE)
SCANNED = ("inventories", "tests", "playbooks", "awx", "bench", "molecule", "scripts", ".ci", "site.yml")


def test_nothing_in_the_repository_turns_the_unmask_switch_on():
    offenders = []
    for top in SCANNED:
        root = REPO / top
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file() and path.suffix in ("", ".yml", ".yaml", ".py", ".sh", ".json", ".cfg") \
                    and path.resolve() != Path(__file__).resolve():
                offenders += [f"{path.relative_to(REPO)}: {m.group(0)}"
                              for m in SWITCH.finditer(path.read_text(errors="replace"))]
    assert offenders == []


def test_the_switch_is_off_by_default_and_documented():
    defaults = (REPO / "roles/stack/defaults/main/main.yml").read_text()
    assert "stack_debug_unmask_results: false" in defaults
    assert "stack_debug_unmask_results" in (REPO / "README.md").read_text()
