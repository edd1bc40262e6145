#!/usr/bin/env python
"""Render docs/roles/<role>.md from each role's meta/argument_specs.yml, so the role documentation cannot drift
from the options Ansible validates.

    scripts/role_docs.py           write the pages
    scripts/role_docs.py --check   fail (exit 1) when a page is missing or out of date
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "roles"


def cell(text) -> str:
    if isinstance(text, list):
        text = " ".join(str(t) for t in text)
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(role: str, spec: dict) -> str:
    main = spec["argument_specs"]["main"]
    lines = [f"# datamancy.stack.{role}", "", f"_Generated from `roles/{role}/meta/argument_specs.yml` by "
             "`scripts/role_docs.py`; edit the spec, not this page._", "", main.get("short_description", ""), ""]
    for paragraph in main.get("description", []):
        lines += [paragraph, ""]
    lines += ["| option | type | default | description |", "| --- | --- | --- | --- |"]
    for name, option in main.get("options", {}).items():
        kind = option.get("type", "str")
        if option.get("elements"):
            kind += f" of {option['elements']}"
        if option.get("choices"):
            kind += " (" + ", ".join(str(c) for c in option["choices"]) + ")"
        default = "required" if option.get("required") else (
            f"`{yaml.safe_dump(option['default'], default_flow_style=True).strip().removesuffix('...').strip()}`"
            if "default" in option else "derived")
        secret = " **Secret: never logged.**" if option.get("no_log") else ""
        lines.append(f"| `{name}` | {cell(kind)} | {cell(default)} | {cell(option.get('description', ''))}{secret} |")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    check = "--check" in sys.argv
    DOCS.mkdir(parents=True, exist_ok=True)
    stale = []
    for spec_file in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        role = spec_file.parts[-3]
        page = DOCS / f"{role}.md"
        text = render(role, yaml.safe_load(spec_file.read_text()))
        if check:
            if not page.exists() or page.read_text() != text:
                stale.append(str(page.relative_to(ROOT)))
        else:
            page.write_text(text)
    if stale:
        print("role docs out of date (run scripts/role_docs.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
