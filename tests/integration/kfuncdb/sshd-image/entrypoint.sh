#!/bin/sh
# Host keys are made on first start and kept across restarts (the test replaces one to simulate a changed host).
# The docker group takes the gid of the socket the test mounts, as on a real host.
set -eu
ssh-keygen -A
if [ -S /var/run/docker.sock ]; then
  gid=$(stat -c %g /var/run/docker.sock)
  getent group docker >/dev/null || groupadd --gid "$gid" docker
fi
exec /usr/sbin/sshd -D -e
