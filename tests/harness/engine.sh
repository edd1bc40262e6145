#!/usr/bin/env bash
# Make a Docker engine answer on this machine.
#   engine.sh start   reuse an answering engine, else install Debian's docker.io and start dockerd
#   engine.sh stop    stop dockerd only if this harness started it (pidfile marks ownership)
set -euo pipefail

state_dir="${DATAMANCY_STATE_DIR:-/var/tmp/datamancy-harness}"
pidfile="$state_dir/dockerd.pid"
logfile="$state_dir/dockerd.log"
mkdir -p "$state_dir"

engine_answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

start() {
  if engine_answers; then
    echo "engine: reusing the running Docker engine"
    return 0
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    echo "engine: installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io >/dev/null
  fi
  echo "engine: starting dockerd (log: $logfile)"
  # setsid detaches dockerd from the caller's process group, so the CI job's
  # teardown of its own children does not kill the engine mid-test.
  # No userland proxy, as docker_host configures real hosts: published ports are NATed, so a client keeps its
  # own address at Caddy (only this machine's own connections arrive from a bridge gateway), and the audit
  # fails an engine that relays API vhosts' clients through docker-proxy.
  setsid nohup dockerd --pidfile "$pidfile.dockerd" --userland-proxy=false >"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for _ in $(seq 1 120); do
    if engine_answers; then
      echo "engine: ready ($(docker version --format '{{.Server.Version}}'))"
      return 0
    fi
    sleep 0.5
  done
  echo "engine: dockerd did not answer within 60 s; last log lines:" >&2
  tail -n 30 "$logfile" >&2
  return 1
}

stop() {
  if [[ ! -f "$pidfile" ]]; then
    echo "engine: not started by this harness; leaving it alone"
    return 0
  fi
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  rm -f "$pidfile"
  echo "engine: stopped the dockerd this harness started"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
