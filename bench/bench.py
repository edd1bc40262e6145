"""Convergence speed of the collection against what users would use instead, on this machine's engine with the
harness images (docs/benchmark.md). Not a test: it measures and prints a table.

    bench/run.sh [--only cold,noop,compose,scale] [--hosts 1,4,8]

Every deployment is a tests/lib StackDeployment (own prefix, ports, directories) and is destroyed at the end,
whatever happens; the compose and `docker run` baselines reuse that deployment's names, so its destroy()
removes them too.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "lib"))

from stacklib import ANSIBLE_PLAYBOOK, StackDeployment  # noqa: E402  pylint: disable=wrong-import-position

from engines import TargetEngine  # noqa: E402  pylint: disable=wrong-import-position

PROFILE = re.compile(r"^(.+?) -{2,} (\d+\.\d+)s$", re.MULTILINE)
HEALTH_TIMEOUT = 600


def harness_vars(mode: str) -> dict:
    extra = yaml.safe_load((REPO / "inventories/local/group_vars/all/images.yml").read_text())
    extra.update(yaml.safe_load((REPO / "tests/integration/day2/vars.yml").read_text()))
    extra["stack_mode"] = mode
    return extra


def timed(func, *args, **kwargs):
    start = time.monotonic()
    result = func(*args, **kwargs)
    return time.monotonic() - start, result


def converge(stack: StackDeployment, playbook: str = "site.yml", **overrides):
    seconds, run = timed(stack.playbook, playbook, **overrides)
    if run.returncode != 0:
        raise SystemExit(f"{playbook} failed:\n{run.output[-4000:]}")
    return seconds, run


def task_count(run) -> int:
    return len(re.findall(r"^TASK \[", run.output, re.MULTILINE))


def slowest(run, count: int = 5) -> list[tuple[str, float]]:
    recap = run.output.split("TASKS RECAP", 1)[-1]
    return [(name.strip(), float(secs)) for name, secs in PROFILE.findall(recap)][:count]


def wait_healthy(client: docker.DockerClient, names: list[str]) -> None:
    """Until every container runs and, where it has a health check, reports healthy."""
    deadline = time.monotonic() + HEALTH_TIMEOUT
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            try:
                state = client.api.inspect_container(name)["State"]
            except docker.errors.NotFound:
                continue
            health = state.get("Health", {}).get("Status")
            if state["Running"] and health in (None, "healthy"):
                pending.discard(name)
        time.sleep(0.5)
    if pending:
        raise SystemExit(f"not healthy after {HEALTH_TIMEOUT} s: {sorted(pending)}")


def remove_containers(stack: StackDeployment, keep_volumes: bool = False) -> None:
    for container in stack.containers():
        container.remove(force=True, v=not keep_volumes)
    if not keep_volumes:
        for volume in stack.docker.volumes.list():
            if volume.name.startswith(stack.vars["stack_volume_prefix"]):
                volume.remove(force=True)
    for network in stack.docker.networks.list():
        if network.name.startswith(stack.prefix):
            network.remove()


def unescape(value):
    """The export escapes $ as $$ for Compose's interpolation; docker run takes the literal value."""
    if isinstance(value, str):
        return value.replace("$$", "$")
    if isinstance(value, list):
        return [unescape(item) for item in value]
    if isinstance(value, dict):
        return {key: unescape(item) for key, item in value.items()}
    return value


def docker_run_argv(name: str, service: dict, document: dict) -> list[list[str]]:
    """The plain `docker run` (plus `network connect` for further networks) equivalent of one Compose service."""
    del name
    service = unescape(service)
    argv = ["docker", "run", "-d", "--name", service["container_name"], "--restart", service["restart"]]
    networks = list(service["networks"].items())
    first, first_opts = networks[0]
    argv += ["--network", document["networks"][first]["name"]]
    argv += [f"--network-alias={alias}" for alias in first_opts.get("aliases", [])]
    argv += ["--cap-drop", "ALL"] + [f"--cap-add={cap}" for cap in service.get("cap_add", [])]
    argv += [f"--security-opt={opt}" for opt in service.get("security_opt", [])]
    argv += ["--read-only"] if service.get("read_only") else []
    argv += [f"--tmpfs={mount}" for mount in service.get("tmpfs", [])]
    argv += ["--user", service["user"]] if "user" in service else []
    argv += [f"--env={key}={value}" for key, value in service.get("environment", {}).items()]
    argv += [f"--env-file={path}" for path in service.get("env_file", [])]
    argv += [f"--publish={port}" for port in service.get("ports", [])]
    argv += [f"--label={key}={value}" for key, value in service.get("labels", {}).items()]
    for volume in service.get("volumes", []):
        source = volume["source"]
        if volume["type"] == "volume":
            source = document["volumes"][source]["name"]
        spec = f"type={volume['type']},source={source},target={volume['target']}"
        argv += ["--mount", spec + (",readonly" if volume.get("read_only") else "")]
    check = service.get("healthcheck")
    if check:
        test = check["test"]
        if isinstance(test, str):
            argv += ["--health-cmd", test]
        else:
            argv += ["--health-cmd", test[1] if test[0] == "CMD-SHELL" else shlex.join(test[1:])]
        for key in ("interval", "timeout", "retries", "start_period"):
            if key in check:
                argv += [f"--health-{key.replace('_', '-')}={check[key]}"]
    entrypoint = service.get("entrypoint")
    if entrypoint:
        argv += ["--entrypoint", entrypoint[0]]
    argv.append(service["image"])
    argv += (entrypoint[1:] if entrypoint else []) + list(service.get("command", []))
    connects = [["docker", "network", "connect"] + [f"--alias={alias}" for alias in opts.get("aliases", [])]
                + [document["networks"][net]["name"], service["container_name"]] for net, opts in networks[1:]]
    return [argv] + connects


def run_floor(document: dict, services: list[str]) -> None:
    for network in document["networks"].values():
        subprocess.run(["docker", "network", "create"] + (["--internal"] if network["internal"] else [])
                       + [network["name"]], check=True, capture_output=True)
    for name in services:
        for argv in docker_run_argv(name, document["services"][name], document):
            started = subprocess.run(argv, capture_output=True, text=True, check=False)
            if started.returncode != 0:
                raise SystemExit(f"{shlex.join(argv)} failed:\n{started.stderr[-4000:]}")


def mode_services(document: dict, mode: str) -> list[str]:
    """Services of a mode in dependency order (bootstrap services run in both modes)."""
    wanted = {name for name, svc in document["services"].items()
              if mode == "full" or svc["labels"]["datamancy.stack.mode"] == "bootstrap"}
    ordered: list[str] = []

    def visit(name):
        if name in ordered:
            return
        for dep in document["services"][name].get("depends_on", []):
            if dep in wanted:
                visit(dep)
        ordered.append(name)

    for name in sorted(wanted):
        visit(name)
    return ordered


def bench_baselines(stack: StackDeployment, compose_file: Path, mode: str) -> dict[str, float]:
    """Compose up and the docker-run floor for one mode, from the same exported file, containers removed first
    (named volumes, bind directories, rendered files and images stay: they are what the export references)."""
    document = yaml.safe_load(compose_file.read_text())
    services = mode_services(document, mode)
    names = [document["services"][name]["container_name"] for name in services]
    results = {}
    project = ["docker-compose", "-p", stack.prefix.rstrip("-"), "-f", str(compose_file)]

    def compose_up():
        up = subprocess.run(project + ["up", "-d", "--no-build", *services], capture_output=True, text=True, check=False)
        if up.returncode != 0:
            raise SystemExit(f"docker-compose up failed:\n{up.stderr[-4000:]}")
        wait_healthy(stack.docker, names)

    def docker_run_loop():
        run_floor(document, services)
        wait_healthy(stack.docker, names)

    # Named volumes are kept: the directory's service accounts come from the roles' LDAP reconcile, which the
    # Compose file cannot do; without them Authelia cannot bind and never gets healthy.
    for tool, start in (("docker-compose", compose_up), ("docker run loop", docker_run_loop)):
        remove_containers(stack, keep_volumes=True)
        results[tool] = timed(start)[0]
    remove_containers(stack, keep_volumes=True)
    return results


TARGET_HOST_IMAGE = "datamancy-test/target-host:local"


def start_target_host(stack: StackDeployment, engine: TargetEngine) -> str:
    """A managed host as a container: Debian with the modules' Python libraries (tests/images/target-host), its
    own engine (bench/engines.py) as /var/run/docker.sock, and the deployment's directories at the same paths (the
    engine resolves bind mounts on this machine, not in the container). The container itself runs on the machine's
    engine, named with the deployment's prefix, so destroy() removes it."""
    name = f"{stack.prefix}target"
    stack.docker.containers.run(
        TARGET_HOST_IMAGE, name=name, hostname=name, detach=True,
        volumes={str(engine.socket): {"bind": "/var/run/docker.sock", "mode": "rw"},
                 str(stack.workdir): {"bind": str(stack.workdir), "mode": "rw"}})
    return name


def scale_inventory(stacks: list[StackDeployment], engines: list[TargetEngine], path: Path) -> None:
    """One inventory host per deployment, reached with `docker exec` (the docker connection) in its container."""
    hosts = {}
    for index, (stack, engine) in enumerate(zip(stacks, engines)):
        stack.write_vars()
        host = dict(yaml.safe_load(stack.vars_file.read_text()), ansible_connection="docker",
                    ansible_host=start_target_host(stack, engine), ansible_python_interpreter="/usr/bin/python3",
                    docker_host_manage_engine=False)
        hosts[f"bench{index}"] = host
    path.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))


def start_engines(engines: list[TargetEngine], images: list[str]) -> None:
    """Every target host's dockerd, started and loaded before the clock starts (a few at a time: a start and a
    load take a few seconds each)."""
    def ready(engine: TargetEngine) -> None:
        engine.start()
        engine.load(images)

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(ready, engine) for engine in engines]
    for future in futures:
        future.result()


def bench_scale(counts: list[int]) -> dict[int, float]:
    """The representative play (bench/scale.yml: networks + Redis, with its secret, config, secret file, hardened
    container and health wait) cold against N target hosts (containers, each with its own engine) at once, each
    with its own prefix, ports and directories; forks = N."""
    results = {}
    for count in counts:
        stacks = [StackDeployment(extra_vars=harness_vars("bootstrap")) for dummy in range(count)]
        engines = [TargetEngine(index) for index in range(count)]
        try:
            start_engines(engines, [stacks[0].vars["redis_image"]])
            with tempfile.TemporaryDirectory() as tmp:
                inventory = Path(tmp) / "hosts.yml"
                scale_inventory(stacks, engines, inventory)
                start = time.monotonic()
                run = subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(inventory), "bench/scale.yml",
                                      "-f", str(max(count, 1))], cwd=REPO, capture_output=True, text=True, check=False)
                results[count] = time.monotonic() - start
                print(f"  ({count} host(s): {results[count]:.1f} s)", flush=True)
                if run.returncode != 0:
                    raise SystemExit(f"scale run with {count} hosts failed:\n{(run.stdout + run.stderr)[-4000:]}")
        finally:
            # The engines first: their containers hold bind mounts of the deployments' directories.
            for engine in engines:
                engine.stop()
            for stack in stacks:
                stack.destroy()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="cold,noop,compose,scale")
    parser.add_argument("--hosts", default="1,4,8")
    parser.add_argument("--mode", default="full", choices=["bootstrap", "full"],
                        help="mode of the deployment measured by noop and compose (cold always does both)")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    rows: list[tuple[str, str]] = []

    def row(what, value):
        rows.append((what, value))
        print(f"  {what}: {value}", flush=True)

    mode = args.mode if parts & {"noop", "compose"} else "full"
    if parts & {"cold", "noop", "compose"}:
        stack = StackDeployment(extra_vars=harness_vars(mode))
        try:
            seconds, run = converge(stack)
            row(f"ansible cold converge, {mode}", f"{seconds:.1f} s ({task_count(run)} tasks)")
            if "noop" in parts:
                seconds, run = converge(stack)
                row(f"ansible no-op re-run, {mode}",
                    f"{seconds:.1f} s, changed={run.changed}, {task_count(run)} tasks")
                for name, secs in slowest(run):
                    row("  slowest task", f"{secs:.2f} s {name}")
                # The same without Mitogen: what a controller without the package (or ANSIBLE_STRATEGY=linear) gets.
                os.environ["ANSIBLE_STRATEGY"] = "ansible.builtin.linear"
                try:
                    seconds, run = converge(stack)
                finally:
                    del os.environ["ANSIBLE_STRATEGY"]
                row(f"ansible no-op re-run, {mode}, plain linear strategy",
                    f"{seconds:.1f} s, changed={run.changed}, {task_count(run)} tasks")
            if "compose" in parts:
                compose_file = stack.workdir / "docker-compose.yml"
                seconds, run = converge(stack, "playbooks/export_compose.yml", stack_compose_file=str(compose_file))
                row("export_compose.yml (no-op converge + render)", f"{seconds:.1f} s")
                for baseline_mode in ("bootstrap", "full")[:2 if mode == "full" else 1]:
                    for tool, secs in bench_baselines(stack, compose_file, baseline_mode).items():
                        row(f"{tool} up until healthy, {baseline_mode}", f"{secs:.1f} s")
        finally:
            subprocess.run(["docker-compose", "-p", stack.prefix.rstrip("-"), "-f", str(stack.workdir / "docker-compose.yml"),
                            "down", "-v"], capture_output=True, check=False)
            stack.destroy()

    if "scale" in parts:
        counts = [int(c) for c in args.hosts.split(",")]
        results = bench_scale(counts)
        for count, secs in results.items():
            row(f"bench/scale.yml cold, {count} host(s)", f"{secs:.1f} s (x{secs / results[counts[0]]:.2f})")

    if "cold" in parts and mode == "full":
        stack = StackDeployment(extra_vars=harness_vars("bootstrap"))
        try:
            seconds, run = converge(stack)
            row("ansible cold converge, bootstrap", f"{seconds:.1f} s ({task_count(run)} tasks)")
        finally:
            stack.destroy()

    width = max(len(what) for what, dummy in rows) if rows else 10
    print("\n| measurement".ljust(width + 3) + " | figure |")
    print("|" + "-" * (width + 2) + "|--------|")
    for what, value in rows:
        print(f"| {what.ljust(width)} | {value} |")


if __name__ == "__main__":
    main()
