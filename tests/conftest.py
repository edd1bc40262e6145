"""Make the collection importable as ``ansible_collections.datamancy.stack`` in every test.

``collections/ansible_collections/datamancy/stack`` is a symlink to the repository root (ansible.cfg uses the same
path), so tests import the plugins exactly as Ansible does.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# tests/lib holds helpers the integration suites share (stacklib).
for collections_dir in (REPO_ROOT / "collections", REPO_ROOT / ".cache" / "collections", REPO_ROOT / "tests" / "lib"):
    if str(collections_dir) not in sys.path:
        sys.path.insert(0, str(collections_dir))
