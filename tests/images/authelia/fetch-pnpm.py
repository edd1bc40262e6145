"""Download pnpm's npm registry tarball and check it against the integrity pinned in pnpm.sha512.

    fetch-pnpm.py VERSION PINS OUT
"""
import base64
import hashlib
import sys
import urllib.request

version, pins_path, out = sys.argv[1:4]
name = f"pnpm-{version}.tgz"
with open(pins_path, encoding="utf-8") as pins_file:
    pins = {
        fields[1]: fields[0]
        for fields in (line.split() for line in pins_file if line.strip() and not line.startswith("#"))
    }
if name not in pins:
    sys.exit(f"pnpm.sha512 has no integrity for {name}: pin it before changing PNPM_VERSION")
with urllib.request.urlopen(f"https://registry.npmjs.org/pnpm/-/{name}", timeout=120) as response:
    data = response.read()
got = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
if got != pins[name]:
    sys.exit(f"{name}: integrity {got} differs from the pinned {pins[name]}")
with open(out, "wb") as out_file:
    out_file.write(data)
