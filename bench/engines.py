"""Docker engines of their own for the benchmark's target hosts.

A real managed host has its own dockerd. Target hosts that share this machine's engine serialise their network and
container creations in that one daemon, which measures the daemon rather than the collection, and
Docker-in-Docker needs --privileged, which these machines refuse. So each target host gets a dockerd on this
machine with its own data root, exec root, socket, bridge and address pool, and sees it as /var/run/docker.sock.

What keeps such an engine from disturbing the machine's own one:
- its own default bridge (created here): dockerd started with --bridge=none deletes docker0, the main engine's;
- --iptables=false: two daemons rewriting the same DOCKER chains at start-up race with each other; the benchmark's
  containers only talk over their bridges (no NAT, no published ports);
- an address pool (10.210.0.0/16, a /20 per engine) that overlaps neither the main engine's pools nor another
  bench engine's.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import docker

STATE = Path("/var/lib/datamancy-bench-engines")
RUN = Path("/run/datamancy-bench")
START_TIMEOUT = 60


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


class TargetEngine:
    """One dockerd for one target host; ``start`` it, ``load`` the images it runs, ``stop`` removes everything."""

    def __init__(self, index: int):
        if not 0 <= index < 16:
            raise ValueError("at most 16 bench engines (one /20 of 10.210.0.0/16 each)")
        self.index = index
        self.bridge = f"dmbench{index}"
        self.root = STATE / self.bridge
        # Short on purpose: containerd's socket lives under the exec root, and unix socket paths end at 108 bytes.
        self.exec_root = RUN / str(index)
        self.socket = RUN / f"{index}.sock"
        self.pidfile = RUN / f"{index}.pid"
        self.process: subprocess.Popen | None = None
        self.client: docker.DockerClient | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        self._remove_leftovers()
        RUN.mkdir(parents=True, exist_ok=True)
        self.root.mkdir(parents=True)
        _ip("link", "add", "name", self.bridge, "type", "bridge")
        _ip("addr", "add", f"10.209.{self.index}.1/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        # The daemon keeps its own copy of the log's descriptor; ours is closed once it runs.
        with (self.root / "dockerd.log").open("w") as log:
            self.process = subprocess.Popen(
                ["dockerd", "--data-root", str(self.root / "data"), "--exec-root", str(self.exec_root),
                 "--host", self.url, "--pidfile", str(self.pidfile), "--bridge", self.bridge,
                 "--iptables=false", "--ip-masq=false",
                 "--default-address-pool", f"base=10.210.{self.index * 16}.0/20,size=24"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                # The client asks the daemon for its API version when it is made: made once the socket answers.
                self.client = docker.DockerClient(base_url=self.url, timeout=120)
                return
            except (docker.errors.DockerException, OSError) as error:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    tail = (self.root / "dockerd.log").read_text()[-2000:]
                    raise RuntimeError(f"bench engine {self.index} did not start: {error}\n{tail}") from error
                time.sleep(0.3)

    def load(self, images: list[str]) -> None:
        """Copy images from the machine's engine (nothing can be pulled here)."""
        save = subprocess.Popen(["docker", "save", *images], stdout=subprocess.PIPE)
        subprocess.run(["docker", "--host", self.url, "load", "-q"], stdin=save.stdout, check=True,
                       capture_output=True)
        save.stdout.close()
        if save.wait() != 0:
            raise RuntimeError(f"docker save {' '.join(images)} failed")

    def stop(self) -> None:
        """Containers and networks first (their bridges and veths live in this machine's namespace), then the
        daemon, its bridge and its data."""
        if self.client is not None:
            try:
                for container in self.client.containers.list(all=True):
                    container.remove(force=True, v=True)
                self.client.networks.prune()
            except docker.errors.DockerException:
                pass
            self.client.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """What an interrupted earlier run left: a daemon, the bridge, the data."""
        if self.pidfile.exists():
            try:
                pid = int(self.pidfile.read_text())
                os.kill(pid, signal.SIGTERM)
                for dummy in range(60):
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.5)
            except (ValueError, ProcessLookupError):
                pass
            self.pidfile.unlink(missing_ok=True)
        _ip("link", "del", self.bridge, check=False)
        # A daemon killed hard leaves its overlay and netns mounts; rmtree must not walk into them.
        for mount in sorted(self._mounts(), reverse=True):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        self.socket.unlink(missing_ok=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def _mounts(self) -> list[str]:
        roots = (f"{self.root}/", f"{self.exec_root}/")
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            points = [line.split()[1] for line in mounts]
        return [point for point in points if point.startswith(roots) or f"{point}/" in roots]
