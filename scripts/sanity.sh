#!/usr/bin/env bash
# Static checks of the collection as Ansible Galaxy would see it, runnable on a fresh machine whose only network
# is the package registries:
#   1. ansible-test sanity (every test that runs offline, see SKIPPED below) on a copy of the collection;
#   2. ansible-galaxy collection build, and a check that the tarball carries no harness, cache or virtualenv;
#   3. ansible-doc rendering of every module, and antsibull-changelog lint.
#   scripts/sanity.sh                 all of the above
#   scripts/sanity.sh TEST...         only these ansible-test sanity tests (e.g. `pylint validate-modules`)
# Exits non-zero when any step fails; prints each step's time.
set -euo pipefail
source "$(dirname "$0")/lib/setup.sh"

# Sanity tests left out, and why. ansible-test runs every other test it lists for a collection (24 in 2.19).
#   pslint: PSScriptAnalyzer needs PowerShell, which Debian does not package; the collection has no .ps1/.psm1.
SKIPPED=(pslint)
# Not run at all: ansible-core's own docs-build/package-data tests (they exist only for ansible-core itself), and
# `antsibull-docs lint-collection-docs` (antsibull-docs is not among requirements/python.txt's pins).

declare -a timings=() failed=()
fail() { printf 'sanity.sh: %s\n' "$*" >&2; exit 1; }
# step LABEL COMMAND...: runs a step to the end even when an earlier one failed, so one run reports everything.
step() {
  local label=$1 rc=0 start=$SECONDS
  shift
  log "$label"
  # Run in the background so `set -e` still holds inside the step (bash ignores it in a command tested by
  # `||`); `wait` hands back its status.
  "$@" &
  wait $! || rc=$?
  timings+=("$(printf '%-46s %4ds  %s' "$label" $((SECONDS - start)) "$([[ $rc -eq 0 ]] && echo ok || echo FAILED)")")
  [[ $rc -eq 0 ]] || failed+=("$label")
}

# ansible-test bootstraps pip into each sanity test's empty virtualenv with a get-pip script it downloads from
# ci-files.testing.ansible.com, which our machines cannot reach (only the package registries are). It uses a file
# already at ~/.ansible/test/cache/get_pip_<pip version>.py instead, so we put a stand-in there that does what
# get-pip does: run pip from the interpreter's bundled pip wheel (Debian: /usr/share/python-wheels, from
# python3-venv) to install the requested pip from PyPI. A real get-pip script found there is left alone.
ensure_get_pip_standin() {
  local pip_version standin
  # The pip version ansible-test pins (24.2 in ansible-core 2.19.14) names the file it looks for.
  pip_version=$(python - <<'PY'
import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version='3.11'))['pip'])
PY
)
  standin="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
  # pypa's real get-pip.py opens with "Hi There!": keep it if someone downloaded it; replace anything else.
  if [[ -f "$standin" ]] && grep -q '^# Hi There!' "$standin"; then
    return 0
  fi
  mkdir -p "$(dirname "$standin")"
  cat >"$standin.tmp" <<'PY'
# datamancy get-pip stand-in, written by scripts/sanity.sh: ansible-test's get-pip download host is unreachable
# from our machines. Like get-pip.py, run pip from a pip wheel on sys.path (here the interpreter's bundled
# ensurepip wheel) and let it install the requested packages from the package index.
import glob
import os
import runpy
import sys
import sysconfig

import ensurepip

wheel_dirs = [sysconfig.get_config_var('WHEEL_PKG_DIR') or '', os.path.join(os.path.dirname(ensurepip.__file__), '_bundled')]
wheels = sorted(w for d in wheel_dirs if d for w in glob.glob(os.path.join(d, 'pip-*.whl')))
if not wheels:
    sys.exit('get-pip stand-in: no bundled pip wheel found in %s (install python3-venv)' % wheel_dirs)
args = sys.argv[1:]
# get-pip.py's own flags: without them it also installs setuptools and wheel.
extra = [name for name, flag in (('setuptools', '--no-setuptools'), ('wheel', '--no-wheel')) if flag not in args]
sys.path.insert(0, wheels[-1])
sys.argv = ['pip', 'install'] + [a for a in args if a not in ('--no-setuptools', '--no-wheel')] + extra
runpy.run_module('pip', run_name='__main__', alter_sys=True)
PY
  mv "$standin.tmp" "$standin"
}

# ansible-test only works on a collection at .../ansible_collections/<namespace>/<name>/ and points
# ANSIBLE_COLLECTIONS_PATH at that ansible_collections directory itself (it overrides the variable), so the
# pinned dependencies must be siblings there. The copy holds what git would commit (tracked and new files that
# .gitignore does not exclude) minus the parts that are not the collection.
stage_collection() {
  local dest="$1/ansible_collections/datamancy/stack" f
  mkdir -p "$dest"
  if git -C "$DATAMANCY_ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
      case "$f" in
        collections/* | tests/images/* | tests/output/*) continue ;;
      esac
      # Deleted but not yet committed files are still listed by --cached.
      if [[ -e "$f" || -L "$f" ]]; then printf '%s\0' "$f"; fi
    done | rsync -a --from0 --files-from=- ./ "$dest/"
  else
    rsync -a --exclude=/.git --exclude=/.venv --exclude=/.cache --exclude=/.ansible --exclude=/collections \
      --exclude=/tests/images --exclude=/tests/output --exclude=__pycache__ ./ "$dest/"
  fi
  cp -a "$CACHE/collections/ansible_collections/." "$1/ansible_collections/"
}

run_sanity() {
  local dir="$1"
  shift
  local -a select=()
  if [[ $# -gt 0 ]]; then
    for t in "$@"; do select+=(--test "$t"); done
  else
    for t in "${SKIPPED[@]}"; do select+=(--skip-test "$t"); done
  fi
  # The shellcheck sanity test lints every *.sh and needs the program (Debian packages it).
  apt_install shellcheck
  (cd "$dir/ansible_collections/datamancy/stack" && ansible-test sanity --local --python 3.11 --color no "${select[@]}")
}

check_build() {
  local out="$1" tarball listing bad
  mkdir -p "$out"
  ansible-galaxy collection build --force --output-path "$out" . >/dev/null
  tarball=$(echo "$out"/datamancy-stack-*.tar.gz)
  [[ -f "$tarball" ]] || fail "ansible-galaxy collection build wrote no tarball"
  # Install what was built, so the documentation check below reads the shipped artifact. Only that path may be
  # configured: ansible-galaxy skips a collection it already finds (ansible.cfg's ./collections has this one).
  ANSIBLE_COLLECTIONS_PATH="$out/installed" \
    ansible-galaxy collection install --offline --no-deps --force -p "$out/installed" "$tarball" >/dev/null
  [[ -f "$out/installed/ansible_collections/datamancy/stack/MANIFEST.json" ]] ||
    fail "ansible-galaxy collection install of $(basename "$tarball") installed nothing"
  listing=$(tar -tzf "$tarball")
  # What must never ship: the virtualenv, tool caches (.cache, .pytest_cache, .ruff_cache, .mypy_cache, .ansible),
  # the test harness and its images, the collections symlink farm, git metadata, test output and byte-code.
  bad=$(grep -E '^(\.venv|\.git|\.ansible|collections|tests/images|tests/harness|tests/output)(/|$)|(^|/)\.[^/]*cache(/|$)|(^|/)__pycache__/|\.pyc$' \
    <<<"$listing" || true)
  if [[ -n "$bad" ]]; then
    printf '%s\n' "$bad" | head -20 >&2
    fail "$(wc -l <<<"$bad") entries in the collection tarball must not ship (add them to galaxy.yml build_ignore)"
  fi
  for must in MANIFEST.json FILES.json meta/runtime.yml; do
    grep -qx "$must" <<<"$listing" || fail "the collection tarball lacks $must"
  done
  log "$(basename "$tarball"): $(wc -l <<<"$listing") entries, $(du -h "$tarball" | cut -f1)"
}

check_docs() {
  local m out
  for m in plugins/modules/*.py; do
    m=$(basename "$m" .py)
    # ansible-doc exits 0 on some rendering problems and only warns: treat any warning as a failure. The pinned
    # dependencies are on the path: a module may use their documentation fragments.
    out=$(ANSIBLE_COLLECTIONS_PATH="$1:$CACHE/collections" ansible-doc -t module "datamancy.stack.$m" 2>&1 >/dev/null) ||
      fail "ansible-doc -t module datamancy.stack.$m: $out"
    [[ -z "$out" ]] || fail "ansible-doc -t module datamancy.stack.$m warned: $out"
  done
}

total_start=$SECONDS
ensure_venv
ensure_collections
ensure_get_pip_standin

work=$(mktemp -d "${TMPDIR:-/tmp}/datamancy-sanity.XXXXXX")
trap 'rm -rf "$work"' EXIT

step "staging the collection" stage_collection "$work"
[[ ${#failed[@]} -eq 0 ]] || fail "could not stage the collection in $work"
step "ansible-test sanity" run_sanity "$work" "$@"
if [[ $# -eq 0 ]]; then
  step "ansible-galaxy collection build" check_build "$work/build"
  step "ansible-doc of every module (built collection)" check_docs "$work/build/installed"
  step "antsibull-changelog lint" antsibull-changelog lint
fi

log "timings"
printf '    %s\n' "${timings[@]}" "$(printf '%-46s %4ds' total $((SECONDS - total_start)))"
if [[ ${#failed[@]} -gt 0 ]]; then
  printf 'sanity.sh: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
log "all sanity checks passed"
