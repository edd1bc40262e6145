"""Container health check for ClickHouse: GET /ping on the HTTP interface must answer "Ok."."""
import os
import sys
import urllib.request

port = os.environ.get("CLICKHOUSE_HTTP_PORT", "8123")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=4) as response:
        body = response.read().decode("utf-8", "replace").strip()
except Exception as exc:  # refused, timeout or HTTP error: not healthy
    print(f"clickhouse health check failed: {exc}", file=sys.stderr)
    sys.exit(1)
sys.exit(0 if body == "Ok." else 1)
