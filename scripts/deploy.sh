#!/usr/bin/env bash
# Deploys the platform onto this machine with the embedded default inventory (inventories/local).
# On a machine without a container registry the local inventory uses images the harness builds from package
# registries; a real deployment uses your own inventory, where the roles' defaults (pinned upstream images) apply.
#   scripts/deploy.sh [ansible-playbook options...]   e.g. -e stack_mode=full
set -euo pipefail
source "$(dirname "$0")/lib/setup.sh"

ensure_venv
ensure_collections
ensure_engine
ensure_images
log "ansible-playbook -i inventories/local site.yml $*"
ansible-playbook -i inventories/local/hosts.yml site.yml "$@"
