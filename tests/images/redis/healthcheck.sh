#!/bin/bash
# Healthy = PING answers PONG, authenticated with the same password file the server uses.
# REDISCLI_AUTH keeps the password out of redis-cli's argv.
set -euo pipefail
if [[ -n "${REDIS_PASSWORD_FILE:-}" ]]; then
  REDISCLI_AUTH=$(<"$REDIS_PASSWORD_FILE")
  export REDISCLI_AUTH
fi
[[ "$(redis-cli -h 127.0.0.1 -p "${REDIS_HEALTHCHECK_PORT:-6379}" ping)" == PONG ]]
