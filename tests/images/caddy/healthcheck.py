"""Container health check for Caddy: the admin API must answer with the loaded config.

CADDY_HEALTHCHECK_URL overrides the probed URL, e.g. when a Caddyfile turns the admin API off
(`admin off`) and the check should hit a local site instead.
"""
import os
import sys
import urllib.request

url = os.environ.get("CADDY_HEALTHCHECK_URL", "http://127.0.0.1:2019/config/")
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # any failure (refused, timeout, HTTP error) means unhealthy
    print(f"caddy health check failed: {exc}", file=sys.stderr)
    sys.exit(1)
