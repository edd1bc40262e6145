#!/usr/bin/env bash
# Build the harness's local images from tests/images/<name>/ without any container registry.
#   build-images.sh [name ...]   (default: every directory under tests/images)
# Each image is tagged datamancy-test/<name>:<hash of its inputs> and datamancy-test/<name>:local (or the version
# its version-tag file names).
# Inputs are the image directory, requirements/images.env and the base image id, so an unchanged
# image is found by its hash and not rebuilt.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
images_dir="$root/tests/images"
pins="$root/requirements/images.env"
base_repo="${DATAMANCY_BASE_IMAGE_REPO:-datamancy-test/debian}"
host_ca="${DATAMANCY_HOST_CA:-/etc/ssl/certs/ca-certificates.crt}"

bash "$root/tests/harness/base-image.sh" >/dev/null
base_image="$base_repo:bookworm"
base_id=$(docker image inspect --format '{{.Id}}' "$base_image")

build_args=(--build-arg "BASE_IMAGE=$base_image")
while IFS='=' read -r key value; do
  [[ -z "$key" || "$key" == \#* ]] && continue
  build_args+=(--build-arg "$key=$value")
done <"$pins"

# A file-based Go module proxy beside the repository (../shared/goproxy, in CI too) holding modules the reachable
# proxy refuses; an image whose Dockerfile has `COPY goproxy/` gets it in its build context (an empty directory
# when there is none) and in its input hash.
goproxy_dir="${DATAMANCY_GOPROXY_DIR:-$root/../shared/goproxy}"

uses_goproxy() {
  grep -q '^COPY goproxy/' "$1/Dockerfile"
}

inputs_hash() {
  local dir=$1
  {
    echo "$base_id"
    cat "$pins"
    (cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    if uses_goproxy "$dir" && [[ -d "$goproxy_dir" ]]; then
      (cd "$goproxy_dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    fi
  } | sha256sum | cut -c1-12
}

build_one() {
  local name=$1 dir="$images_dir/$1" hash tag ctx start
  [[ -f "$dir/Dockerfile" ]] || { echo "no image named $name ($dir/Dockerfile missing)" >&2; return 2; }
  hash=$(inputs_hash "$dir")
  tag="datamancy-test/$name:$hash"
  if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "image $name: $tag present, skipping build"
  else
    echo "image $name: building $tag"
    start=$(date +%s)
    ctx=$(mktemp -d)
    cp -a "$dir/." "$ctx/"
    # pip inside RUN needs the host's CA bundle; Dockerfiles copy it into a build stage only.
    cp "$host_ca" "$ctx/host-ca.crt"
    if uses_goproxy "$dir"; then
      mkdir "$ctx/goproxy"
      if [[ -d "$goproxy_dir" ]]; then cp -R --no-preserve=mode "$goproxy_dir/." "$ctx/goproxy/"; fi
    fi
    if ! docker build --force-rm --quiet "${build_args[@]}" -t "$tag" "$ctx" >"$ctx.log" 2>&1; then
      echo "image $name: build failed; last lines of the log:" >&2
      tail -n 40 "$ctx.log" >&2
      rm -rf "$ctx" "$ctx.log"
      return 1
    fi
    rm -rf "$ctx" "$ctx.log"
    echo "image $name: built in $(( $(date +%s) - start )) s"
  fi
  # An image directory with a version-tag file (one key of images.env) is tagged with that pin's value instead of
  # :local: checkouts building different pins share this engine, and a version tag is never ambiguous.
  if [[ -f "$dir/version-tag" ]]; then
    local key version
    key=$(tr -d '[:space:]' <"$dir/version-tag")
    version=$(sed -n "s/^$key=//p" "$pins")
    [[ -n "$version" ]] || { echo "image $name: version-tag names $key, which $pins does not set" >&2; return 1; }
    docker tag "$tag" "datamancy-test/$name:$version"
  else
    docker tag "$tag" "datamancy-test/$name:local"
  fi
}

if [[ $# -eq 0 ]]; then
  mapfile -t names < <(find -L "$images_dir" -mindepth 2 -maxdepth 2 -name Dockerfile -printf '%h\n' | xargs -n1 basename | LC_ALL=C sort)
else
  names=("$@")
fi
# Two lanes on two cores: Authelia's Go compile is CPU-bound and takes longest; the other builds mostly wait on
# package downloads, so they run one after another beside it instead of after it.
cpu_lane=() other_lane=()
for name in "${names[@]}"; do
  if [[ "$name" == authelia ]]; then cpu_lane+=("$name"); else other_lane+=("$name"); fi
done
build_lane() {
  local name
  for name in "$@"; do build_one "$name" || return 1; done
}
cpu_pid=
if [[ ${#cpu_lane[@]} -gt 0 ]]; then
  build_lane "${cpu_lane[@]}" &
  cpu_pid=$!
fi
rc=0
build_lane "${other_lane[@]}" || rc=1
if [[ -n "$cpu_pid" ]]; then wait "$cpu_pid" || rc=1; fi
exit "$rc"
