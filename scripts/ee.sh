#!/usr/bin/env bash
# The execution environment AWX runs the playbooks in (execution-environment.yml, ansible-builder version 3).
#   scripts/ee.sh create [CONTEXT]   build the collection tarball, write the build context (default .cache/ee/context)
#   scripts/ee.sh build [ARGS...]    the same, then `ansible-builder build` (podman or docker, with ARGS); needs a
#                                    registry the base image can be pulled from
set -euo pipefail
source "$(dirname "$0")/lib/setup.sh"
ensure_venv

action=${1:-create}
[[ $# -gt 0 ]] && shift
version=$(python -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["version"])')
# execution-environment.yml names the tarball by version: catch a bump that forgot it before building.
grep -q "datamancy-stack-${version}.tar.gz" execution-environment.yml requirements/ee/collections.yml \
  || { echo "ee.sh: execution-environment.yml or requirements/ee/collections.yml does not name version ${version}" >&2; exit 1; }
mkdir -p .cache/ee
ansible-galaxy collection build --force --output-path .cache/ee >/dev/null
case "$action" in
  create) ansible-builder create -f execution-environment.yml --context "${1:-.cache/ee/context}" ;;
  build) ansible-builder build -f execution-environment.yml --context .cache/ee/context "$@" ;;
  *) echo "usage: $0 [create [CONTEXT]|build [ARGS...]]" >&2; exit 2 ;;
esac
