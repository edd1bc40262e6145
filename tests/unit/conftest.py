"""Helpers for running the collection's modules in-process.

``run_module`` feeds arguments through ``ansible.module_utils.testing.patch_module_args`` (the supported way in
ansible-core 2.19) and turns exit_json/fail_json into exceptions, so a test gets the result dict a playbook would.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

# tests/conftest.py normally puts collections/ on sys.path; repeat it so tests/unit also works on its own (e.g.
# from an ansible-test copy at .../ansible_collections/datamancy/stack, whose grand-grand-parent is the root).
REPO_ROOT = Path(__file__).resolve().parents[2]
for candidate in [REPO_ROOT / "collections"] + list(REPO_ROOT.parents)[2:3]:
    if (candidate / "ansible_collections" / "datamancy" / "stack").exists() and str(candidate) not in sys.path:
        sys.path.insert(0, str(candidate))
# The pinned dependencies (community.docker's module_utils, which some modules build on): scripts/lib/setup.sh.
if (REPO_ROOT / ".cache" / "collections").is_dir():
    sys.path.append(str(REPO_ROOT / ".cache" / "collections"))

from ansible.module_utils import basic  # noqa: E402
from ansible.module_utils.testing import patch_module_args  # noqa: E402


class AnsibleExitJson(Exception):
    def __init__(self, result):
        super().__init__(result)
        self.result = result


class AnsibleFailJson(Exception):
    def __init__(self, result):
        super().__init__(result)
        self.result = result


def _exit_json(self, **kwargs):
    kwargs.setdefault("changed", False)
    raise AnsibleExitJson(kwargs)


def _fail_json(self, msg, **kwargs):
    kwargs["failed"] = True
    kwargs["msg"] = msg
    raise AnsibleFailJson(kwargs)


@pytest.fixture
def run_module(monkeypatch):
    """run_module(module, args, check_mode=False, diff=False) -> (ok: bool, result: dict)."""
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail_json)

    def run(module, args, check_mode=False, diff=False):
        full = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
        with patch_module_args(full):
            try:
                module.main()
            except AnsibleExitJson as exc:
                return True, exc.result
            except AnsibleFailJson as exc:
                return False, exc.result
        raise AssertionError("module returned without exit_json/fail_json")

    return run


def tree_snapshot(root):
    """Every path under ``root`` (and root itself) with type, mode, owner and content hash."""
    root = str(root)
    snap = {}
    if not os.path.lexists(root):
        return snap
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] + dirnames + filenames:
            path = os.path.join(dirpath, name) if name else dirpath
            st = os.lstat(path)
            digest = None
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as handle:
                    digest = hashlib.sha256(handle.read()).hexdigest()
            snap[path] = (st.st_mode, st.st_uid, st.st_gid, digest, st.st_mtime_ns)
    return snap


@pytest.fixture
def snapshot():
    return tree_snapshot
