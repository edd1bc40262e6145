# shellcheck shell=bash
# Shared set-up for scripts/deploy.sh and scripts/test.sh: everything the project needs is installed from the
# project's own pins (requirements/), so a fresh Debian 12 machine needs nothing done by hand.
# Each step is stamped with a hash of its inputs and skipped when they have not changed.

DATAMANCY_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV="$DATAMANCY_ROOT/.venv"
CACHE="$DATAMANCY_ROOT/.cache"
export PATH="$VENV/bin:$PATH"
# Ansible reads ansible.cfg from the current directory: run everything from the repository root.
cd "$DATAMANCY_ROOT" || return

log() { printf '==> %s\n' "$*"; }

stamp_ok() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {
  local want stamp="$VENV/.datamancy-stamp"
  want=$(cat "$DATAMANCY_ROOT/requirements/python.txt" /usr/bin/python3 2>/dev/null | sha256sum | cut -c1-16)
  stamp_ok "$stamp" "$want" && return 0
  # Debian's own Python: ansible-core 2.19 supports its 3.11, and its path is stable across machines.
  apt_install python3 python3-venv git rsync
  log "creating the virtualenv $VENV"
  rm -rf "$VENV"
  /usr/bin/python3 -m venv "$VENV"
  local uv_pin
  uv_pin=$(grep -E '^uv==' "$DATAMANCY_ROOT/requirements/python.txt")
  "$VENV/bin/pip" install -q "$uv_pin"
  # Precompiled bytecode: PYTHONDONTWRITEBYTECODE is set on our machines, and every ansible process would
  # otherwise pay ~0.7 s compiling ansible-core again.
  "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --compile-bytecode \
    -r "$DATAMANCY_ROOT/requirements/python.txt"
  echo "$want" >"$stamp"
}

ensure_collections() {
  local pins="$DATAMANCY_ROOT/requirements/collections.txt" dest="$CACHE/collections"
  local want stamp="$dest/.datamancy-stamp"
  want=$(sha256sum "$pins" | cut -c1-16)
  stamp_ok "$stamp" "$want" && return 0
  local bundle
  bundle=$(awk '$1=="bundle" {print $2}' "$pins")
  log "unpacking collections from $bundle"
  local tmp
  tmp=$(mktemp -d)
  "$VENV/bin/pip" download -q --no-deps "$bundle" -d "$tmp"
  rm -rf "$dest"
  mkdir -p "$dest/ansible_collections"
  "$VENV/bin/python" - "$pins" "$tmp"/*.whl "$dest" <<'PY'
import json, sys, zipfile
pins_file, wheel, dest = sys.argv[1:4]
wanted = {}
for line in open(pins_file):
    fields = line.split()
    if len(fields) == 2 and not line.startswith(("#", "bundle")):
        wanted[fields[0]] = fields[1]
archive = zipfile.ZipFile(wheel)
for fqcn, version in wanted.items():
    namespace, name = fqcn.split(".")
    prefix = f"ansible_collections/{namespace}/{name}/"
    manifest = json.loads(archive.read(prefix + "MANIFEST.json"))
    found = manifest["collection_info"]["version"]
    if found != version:
        sys.exit(f"{fqcn}: requirements/collections.txt pins {version} but the bundle has {found}")
    archive.extractall(dest, [n for n in archive.namelist() if n.startswith(prefix)])
PY
  rm -rf "$tmp"
  echo "$want" >"$stamp"
}

ensure_engine() {
  bash "$DATAMANCY_ROOT/tests/harness/engine.sh" start
  # Debian's docker-compose validates playbooks/export_compose.yml's output (tests) and is bench/'s baseline;
  # bench/engines.py makes a bridge per target host engine with iproute2's ip.
  apt_install docker-compose iproute2
}

# The browser journeys (tests/integration/journeys): Debian's Chromium and its driver (Selenium, pinned in
# requirements/python.txt, drives it), certutil to trust Caddy's local root CA as a person would.
ensure_browser() {
  apt_install chromium chromium-driver libnss3-tools
}

ensure_images() {
  bash "$DATAMANCY_ROOT/tests/harness/build-images.sh" "$@"
}
