#!/usr/bin/env bash
# Measures convergence speed against docker-compose and a plain `docker run` loop (docs/benchmark.md).
#   bench/run.sh                      everything (about 5 minutes on an idle 2-core machine)
#   bench/run.sh --only noop          one part: cold, noop, compose, scale
#   bench/run.sh --only scale --hosts 1,4
# Uses the project's set-up (virtualenv, collections, engine, harness images, Debian's docker-compose) and
# removes everything it creates. Bounded: the whole run is killed after 60 minutes.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/setup.sh"
ensure_venv
ensure_collections
ensure_engine
ensure_images
exec timeout --signal=INT --kill-after=120 3600 python bench/bench.py "$@"
