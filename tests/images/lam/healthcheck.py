"""Container health check for LAM: /lam/ must lead (via redirects) to LAM's login page."""
import sys
import urllib.request

try:
    with urllib.request.urlopen("http://127.0.0.1/lam/", timeout=4) as response:
        body = response.read().decode("utf-8", "replace")
        ok = response.status == 200 and "LDAP Account Manager" in body
except Exception as exc:  # refused, timeout, HTTP error: not healthy
    print(f"lam health check failed: {exc}", file=sys.stderr)
    sys.exit(1)
sys.exit(0 if ok else 1)
