#!/bin/bash
# Build the runtime config: include the (mounted or default) redis.conf, then add requirepass from
# REDIS_PASSWORD_FILE. The password lives only in a 0600 file under REDIS_RUNTIME_DIR, so `ps` and
# `docker inspect` never show it. Extra arguments are passed to redis-server (they override the files).
set -euo pipefail
runtime_dir=${REDIS_RUNTIME_DIR:-/run/redis}
config=${REDIS_CONFIG:-/etc/redis/redis.conf}
runtime_conf="$runtime_dir/redis.conf"

umask 077
mkdir -p "$runtime_dir"
{
  echo "include $config"
  if [[ -n "${REDIS_PASSWORD_FILE:-}" ]]; then
    if [[ ! -r "$REDIS_PASSWORD_FILE" ]]; then
      echo "redis-entrypoint: REDIS_PASSWORD_FILE '$REDIS_PASSWORD_FILE' is not readable" >&2
      exit 1
    fi
    password=$(<"$REDIS_PASSWORD_FILE")
    if [[ -z "$password" || "$password" == *$'\n'* ]]; then
      echo "redis-entrypoint: the password file must hold one non-empty line" >&2
      exit 1
    fi
    # Redis config strings in double quotes take backslash escapes: escape \ and " so any password works.
    password=${password//\\/\\\\}
    password=${password//\"/\\\"}
    printf 'requirepass "%s"\n' "$password"
    unset password
  fi
} >"$runtime_conf.tmp"
mv "$runtime_conf.tmp" "$runtime_conf"

if [[ "${1:-}" == redis-server ]]; then shift; fi
if [[ $# -eq 0 || "${1:0:1}" == - ]]; then
  exec redis-server "$runtime_conf" "$@"
fi
exec "$@"
