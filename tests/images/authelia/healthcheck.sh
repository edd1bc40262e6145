#!/bin/sh
# Container health check: GET <scheme>://<host>:<port><path>/api/health must answer 200.
# Authelia rewrites /app/.healthcheck.env at start-up (only when this file exists at /app/healthcheck.sh) with the
# scheme, host, port and path prefix it really listens on; before that the defaults below apply.
set -eu
if [ -r /app/.healthcheck.env ]; then
  . /app/.healthcheck.env
fi
url="${X_AUTHELIA_HEALTHCHECK_SCHEME:-http}://${X_AUTHELIA_HEALTHCHECK_HOST:-localhost}:${X_AUTHELIA_HEALTHCHECK_PORT:-9091}${X_AUTHELIA_HEALTHCHECK_PATH:-}/api/health"
# The probe targets Authelia's own listener on loopback, so a self-signed server certificate is accepted.
exec python3 -c '
import ssl, sys, urllib.request
ctx = ssl._create_unverified_context()
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3, context=ctx) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception as e:
    print(e, file=sys.stderr)
    sys.exit(1)
' "$url"
