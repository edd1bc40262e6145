"""Run a playbook using every secret module at -vvvv and search the complete output for every generated value.

Needs no Docker: it runs against localhost with a temporary store. The playbook runs from the repository root so
the repository's ansible.cfg applies; ANSIBLE_COLLECTIONS_PATH is set as well so the collection resolves even when
.cache/collections has not been prepared.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = Path(__file__).resolve().parent / "no_leak.yml"


def _ansible_playbook():
    candidate = Path(sys.executable).parent / "ansible-playbook"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ansible-playbook")
    if not found:
        pytest.skip("ansible-playbook is not installed")
    return found


def _secret_strings(store: Path, workdir: Path):
    """Every private value: store files (not .meta/.pub), long PEM lines, single-line forms, env file values."""
    values = set()
    for path in store.iterdir():
        if path.name.startswith(".") or path.name.endswith((".meta", ".pub")) or path.name.endswith("_jwks"):
            continue
        text = path.read_text()
        if path.name.endswith("_keyring"):
            import json
            for key in json.loads(text)["keys"]:
                values.add(key["key"].strip())
                values.update(line for line in key["key"].splitlines() if len(line) > 20)
                values.add(key["key"].rstrip("\n").replace("\n", "\\n"))
            continue
        values.add(text.strip())
        if "-----BEGIN" in text:
            values.update(line for line in text.splitlines() if len(line) > 20)
            values.add(text.rstrip("\n").replace("\n", "\\n"))
    for line in (workdir / ".env").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "DOMAIN=")):
            values.add(line.split("=", 1)[1].strip("'"))
    assert values
    return values


@pytest.mark.integration
def test_playbook_output_contains_no_secret(tmp_path):
    store = tmp_path / "store"
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = dict(os.environ,
               ANSIBLE_COLLECTIONS_PATH=os.pathsep.join([str(REPO_ROOT / "collections"),
                                                         str(REPO_ROOT / ".cache" / "collections")]),
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
               ANSIBLE_STDOUT_CALLBACK="default")
    proc = subprocess.run(
        [_ansible_playbook(), "-vvvv", "-i", "localhost,", str(PLAYBOOK),
         "-e", "store=%s workdir=%s" % (store, workdir)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "failed=0" in proc.stdout

    secrets = _secret_strings(store, workdir)
    assert len(secrets) > 40  # values, PEM lines, single-line forms, env values
    leaked = sorted(s for s in secrets if s in output)
    assert leaked == [], "%d secret strings appear in the output" % len(leaked)

    # The censored templating path really delivered the values to the consumer.
    rendered = (workdir / "rendered.conf").read_text()
    assert "admin=" + (store / "admin_password").read_text() in rendered
    assert (store / "authelia_oidc_issuer_key").read_text().strip() in rendered
    assert "the output has been hidden" in output  # censoring happened, including the task without no_log
    assert output.count("the output has been hidden") >= 4
