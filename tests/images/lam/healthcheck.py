"""Container health check for LAM: /lam/ answers and its PHP login page renders the login form
(a static /lam/index.html alone would not prove that PHP works)."""
import sys
import urllib.request

try:
    with urllib.request.urlopen("http://127.0.0.1/lam/", timeout=4) as response:
        ok = response.status == 200
    with urllib.request.urlopen("http://127.0.0.1/lam/templates/login.php", timeout=4) as response:
        body = response.read().decode("utf-8", "replace")
        ok = ok and response.status == 200 and 'name="passwd"' in body
except Exception as exc:  # refused, timeout, HTTP error: not healthy
    print(f"lam health check failed: {exc}", file=sys.stderr)
    sys.exit(1)
sys.exit(0 if ok else 1)
