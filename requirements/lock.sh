#!/usr/bin/env bash
# Re-resolve requirements/python.in into the exact pins of requirements/python.txt (run after editing python.in).
set -euo pipefail
cd "$(dirname "$0")"
../.venv/bin/uv pip compile --python /usr/bin/python3 --quiet --no-header \
  --output-file python.txt python.in
