#!/usr/bin/env bash
# Runs the whole test suite on this machine, installing what it needs first (virtualenv, pinned Python
# packages and collections, a Docker engine when none answers, the harness images).
#   scripts/test.sh            lint, then every pytest suite (unit, integration, molecule) in one run
#   scripts/test.sh lint|unit|sanity  only that stage (quick local loops)
#   scripts/test.sh pytest ARGS...  pytest with your arguments after the set-up
set -euo pipefail
source "$(dirname "$0")/lib/setup.sh"

stage=${1:-all}
[[ $# -gt 0 ]] && shift

lint() {
  log "yamllint"
  yamllint --strict .
  log "ansible-playbook --syntax-check"
  for play in site.yml playbooks/*.yml; do
    ansible-playbook --syntax-check "$play" >/dev/null
  done
  log "ansible-lint (production profile)"
  ansible-lint --profile production --strict -q
  log "role docs match the argument specs"
  python scripts/role_docs.py --check
  log "changelog fragments"
  antsibull-changelog lint
}

run_pytest() {
  # pytest exits 5 when it collects nothing; that is a failure of the suite, not a pass.
  local rc=0
  pytest "$@" || rc=$?
  if [[ $rc -eq 5 ]]; then
    echo "pytest collected no tests: the suite is missing" >&2
  fi
  return "$rc"
}

start=$(date +%s)
ensure_venv
ensure_collections
case "$stage" in
  lint) lint ;;
  unit) run_pytest tests/unit "$@" ;;
  pytest)
    ensure_engine
    ensure_images
    ensure_browser
    run_pytest "$@"
    ;;
  sanity) bash scripts/sanity.sh "$@" ;;
  all)
    lint
    log "ansible-test sanity, collection build, ansible-doc"
    bash scripts/sanity.sh
    ensure_engine
    ensure_images
    ensure_browser
    run_pytest tests "$@"
    ;;
  *) echo "usage: $0 [all|lint|unit|sanity|pytest ARGS...]" >&2; exit 2 ;;
esac
log "done in $(( $(date +%s) - start )) s"
