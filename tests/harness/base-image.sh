#!/usr/bin/env bash
# Build the Debian bookworm base image every harness image starts FROM, without a registry:
# mmdebstrap writes a minimal root filesystem as a tarball and `docker import` turns it into an image.
# The tag carries a hash of the inputs, so a second run finds it and skips the 40-60 s build.
set -euo pipefail

suite=bookworm
packages="python3,python3-requests,ca-certificates"
repo_tag="${DATAMANCY_BASE_IMAGE_REPO:-datamancy-test/debian}"

# Use the mirror this machine's apt already uses instead of writing a host name into the repository.
mirror_from_apt() {
  local uri=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    uri=$(awk '/^URIs:/ && !/security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources)
  fi
  if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
    uri=$(awk '$1=="deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

mirror="${DATAMANCY_DEBIAN_MIRROR:-$(mirror_from_apt)}"
security_mirror="${mirror%/debian}/debian-security"
inputs_hash=$(printf '%s\n' "$suite" "$packages" "$(cat "$0")" | sha256sum | cut -c1-12)
tag="$repo_tag:$suite-$inputs_hash"

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image: $tag present, skipping build"
else
  if ! command -v mmdebstrap >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
  fi
  echo "base image: building $tag from $mirror"
  start=$(date +%s)
  sources=$(mktemp)
  trap 'rm -f "$sources"' EXIT
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
    "$mirror" "$suite" "$mirror" "$suite" "$security_mirror" "$suite" >"$sources"
  mmdebstrap --quiet --variant=minbase --include="$packages" "$suite" - "$sources" \
    | docker import --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
  echo "base image: built in $(( $(date +%s) - start )) s"
fi
docker tag "$tag" "$repo_tag:$suite"
echo "base image: $repo_tag:$suite -> $tag"
