#!/usr/bin/env bash
# Re-resolve requirements/python.in into the exact pins of requirements/python.txt (run after editing python.in).
# Existing pins are kept unless python.in needs a change.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/uv pip compile --python /usr/bin/python3 --quiet --no-header \
  --output-file requirements/python.txt requirements/python.in
