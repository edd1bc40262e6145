# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The security audit's evaluation: evidence gathered on the managed host in, one result per check out.

The playbook (roles/audit) only gathers evidence (container inspections, file modes, listening sockets, answers of
every vhost without a session, the backup's status files); everything that decides pass, warn or fail lives here,
so it is unit-tested without a deployment. What is intended comes from the service registry: a relaxation the
registry does not declare with a reason (an added capability, root, the Docker socket, a public vhost) is an
accident and fails.

A check is ``{"id", "title", "status": pass|warn|fail, "evidence": [str], "failures": [str], "warnings": [str]}``.
"""

from __future__ import annotations

import datetime
import ipaddress

PASS, WARN, FAIL = "pass", "warn", "fail"
SOCKET_SUFFIX = "docker.sock"
# The order checks appear in the report: the guide's checklist order.
CHECK_TITLES = {
    "sso": "All UIs behind SSO",
    "secrets": "Secret files: modes, owner and age",
    "ports": "Only necessary ports exposed",
    "api_clients": "Machine APIs see their clients' own addresses, allowlists as intended",
    "backup": "Volumes backed up on a schedule",
    "kfuncdb": "KFuncDB capability policy minimal",
    "images": "Images up to date against pinned versions",
    "docker_socket": "Docker socket mounts",
    "privileges": "Containers without root or added capabilities",
    "secret_exposure": "No secret value in any container's configuration (docker inspect)",
}


def _check(check_id, evidence, failures, warnings=()):
    warnings = list(warnings)
    status = FAIL if failures else WARN if warnings else PASS
    return {
        "id": check_id,
        "title": CHECK_TITLES[check_id],
        "status": status,
        "evidence": list(evidence),
        "failures": list(failures),
        "warnings": warnings,
    }


def _flag(value, default=False):
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "no", "off", "0")
    return bool(value)


def _reason(service, key):
    return str(service.get(key) or "").strip()


def parse_time(value):
    """ISO 8601 (Docker's nanosecond timestamps, 'Z' suffixes) to an aware UTC datetime; None when unparsable."""
    if not value or not isinstance(value, str) or value.startswith("0001-01-01"):
        return None
    text = value.strip().replace("Z", "+00:00")
    # Python before 3.11 parses at most microseconds: cut Docker's nanoseconds.
    if "." in text:
        head, tail = text.split(".", 1)
        digits = "".join(ch for ch in tail if ch.isdigit())
        zone = tail[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.astimezone(datetime.timezone.utc)


def _age_hours(then, now):
    return (now - then).total_seconds() / 3600.0


# --- containers ------------------------------------------------------------------------------------------------


def container_name(container):
    return str(container.get("Name", "")).lstrip("/")


def container_service(container, prefix):
    """The registry service a container belongs to: its label, else its name without the stack's prefix."""
    labels = (container.get("Config") or {}).get("Labels") or {}
    service = labels.get("datamancy.stack.service")
    if service:
        return service
    name = container_name(container)
    return name[len(prefix):] if prefix and name.startswith(prefix) else name


def _running(container):
    return bool((container.get("State") or {}).get("Running"))


def normalize_cap(cap):
    cap = str(cap).strip().upper()
    return cap[4:] if cap.startswith("CAP_") else cap


def runs_as_root(user):
    """Docker's user field: empty (the image's default, root unless the image says otherwise), a name or a uid."""
    name = str(user or "").split(":", 1)[0].strip()
    return name in ("", "0", "root")


# --- ports -----------------------------------------------------------------------------------------------------

TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"


def _hex_address(text):
    address, port = text.split(":")
    raw = bytes.fromhex(address)
    if len(raw) == 4:
        ip = ipaddress.IPv4Address(raw[::-1])
    else:
        # /proc/net/*6 prints four 32-bit words, each in host (little-endian) order.
        ip = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
        if ip.ipv4_mapped:
            ip = ip.ipv4_mapped
    return ip, int(port, 16)


def parse_proc_net(text, proto):
    """Listening sockets from /proc/net/{tcp,tcp6,udp,udp6}: [{proto, address, port}] (deduplicated, sorted)."""
    state_wanted = TCP_LISTEN if proto.startswith("tcp") else UDP_UNCONNECTED
    found = set()
    for line in (text or "").splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != state_wanted:
            continue
        try:
            ip, port = _hex_address(fields[1])
        except ValueError:
            continue
        found.add((proto.rstrip("6"), str(ip), port))
    return [{"proto": p, "address": a, "port": n} for p, a, n in sorted(found)]


def _exposed(address):
    """A listener on a loopback address is not reachable from outside the host."""
    try:
        return not ipaddress.ip_address(address).is_loopback
    except ValueError:
        return True


def published_ports(container):
    """Host ports a container publishes: [{container_port, proto, host_ip, host_port}]."""
    ports = ((container.get("NetworkSettings") or {}).get("Ports") or {})
    if not _running(container) or not ports:
        ports = (container.get("HostConfig") or {}).get("PortBindings") or {}
    result = []
    for key, bindings in sorted(ports.items()):
        port, _sep, proto = key.partition("/")
        for binding in bindings or []:
            result.append({
                "container_port": int(port),
                "proto": proto or "tcp",
                "host_ip": binding.get("HostIp") or "",
                "host_port": int(binding.get("HostPort") or 0),
            })
    return result


def _binding_text(binding):
    host = binding["host_ip"] or "*"
    return f"{host}:{binding['host_port']}->{binding['container_port']}/{binding['proto']}"


def check_ports(containers, prefix, ingress, expected, listeners, other_containers=(), host_ports_fail=False):
    """Only the ingress publishes, and only the HTTP(S) ports on the configured address; every other published
    port of a stack container fails. Listening host sockets outside loopback and ports published by containers that
    are not the stack's are evidence: they warn (fail with ``host_ports_fail``) unless allowed."""
    evidence, failures, warnings = [], [], []
    allowed = {(b["container_port"], b["proto"], str(b["host_port"])) for b in expected.get("ingress_ports", [])}
    bind = expected.get("bind_address") or ""
    for container in containers:
        name = container_name(container)
        bindings = published_ports(container)
        for binding in bindings:
            text = _binding_text(binding)
            key = (binding["container_port"], binding["proto"], str(binding["host_port"]))
            if container_service(container, prefix) == ingress and key in allowed:
                if bind and binding["host_ip"] not in (bind, ""):
                    failures.append(f"{name} publishes {text}, expected on {bind} only")
                elif bind and binding["host_ip"] == "":
                    failures.append(f"{name} publishes {text} on every address, expected on {bind} only")
                else:
                    evidence.append(f"{name} publishes {text} (the ingress)")
            else:
                failures.append(f"{name} publishes {text}: only {ingress}'s HTTP(S) ports may be published")
    allowed_host = {int(p) for p in expected.get("allowed_host_ports", [])}
    allowed_host |= {int(b["host_port"]) for b in expected.get("ingress_ports", [])}
    unexpected = []
    for container in other_containers:
        for binding in published_ports(container):
            if binding["host_port"] not in allowed_host:
                unexpected.append(f"container {container_name(container)} (not this stack's) publishes "
                                  f"{_binding_text(binding)}")
    for sock in listeners:
        if _exposed(sock["address"]) and sock["port"] not in allowed_host:
            unexpected.append(f"host listens on {sock['address']}:{sock['port']}/{sock['proto']}")
    exposed = [s for s in listeners if _exposed(s["address"])]
    evidence.append(f"{len(listeners)} listening host sockets, {len(exposed)} outside loopback; allowed host ports: "
                    f"{', '.join(str(p) for p in sorted(allowed_host)) or 'none'}")
    (failures if host_ports_fail else warnings).extend(unexpected)
    return _check("ports", evidence, failures, warnings)


# --- SSO -------------------------------------------------------------------------------------------------------


def _redirect_host(location):
    if not location:
        return ""
    rest = location.split("://", 1)[-1]
    return rest.split("/", 1)[0].split("?", 1)[0].split(":", 1)[0].lower()


def check_sso(vhosts, probes, portal_fqdn):
    """Every vhost answered without a session: forward-auth vhosts must send the client to the portal (or 401),
    API vhosts must not (their allowlist answers 403, the upstream 401 for a missing key), public ones need a
    reason in the registry."""
    by_fqdn = {p.get("fqdn"): p for p in probes}
    evidence, failures = [], []
    for vhost in vhosts:
        fqdn, policy = vhost["fqdn"], vhost["policy"]
        probe = by_fqdn.get(fqdn)
        if probe is None:
            failures.append(f"{fqdn} ({policy}): not probed")
            continue
        status = probe.get("status")
        location = probe.get("location") or ""
        answer = f"{status}" + (f" -> {location}" if location else "") if status else f"error {probe.get('error')}"
        line = f"{fqdn}{probe.get('path', '/')} ({policy}): {answer}"
        to_portal = status in (301, 302, 303, 307, 308) and _redirect_host(location) == portal_fqdn
        if status is None:
            failures.append(f"{line}: no answer, cannot verify")
        elif policy in ("sso", "sso_admins"):
            if to_portal or status == 401:
                evidence.append(line)
            else:
                failures.append(f"{line}: answers without a session (expected a redirect to {portal_fqdn} or 401)")
        elif policy == "api":
            if to_portal:
                failures.append(f"{line}: an API vhost redirects to SSO, machine clients cannot follow it")
            elif status in (401, 403):
                evidence.append(line)
            else:
                failures.append(f"{line}: answers without an API key (expected 403 outside the allowlist or the "
                                "upstream's 401)")
        elif policy == "public":
            reason = str(vhost.get("public_reason") or "").strip()
            if reason:
                evidence.append(f"{line}: public by intent ({reason})")
            else:
                failures.append(f"{line}: public without a public_reason in the registry")
        else:
            failures.append(f"{line}: unknown policy")
    return _check("sso", evidence, failures)


def _relayed_port(process_line):
    """The host port a docker-proxy process relays, from its command line (``-host-port N``), or None."""
    fields = process_line.split()
    for flag, value in zip(fields, fields[1:]):
        if flag in ("-host-port", "--host-port") and value.isdigit():
            return int(value)
    return None


def check_api_clients(vhosts, userland_proxies, ingress_host_ports):
    """Machine-API vhosts trust the client address Caddy sees. Docker's userland proxy (a docker-proxy process per
    published port) relays clients from a host socket, so every client arrives from a bridge gateway: a docker-proxy
    relaying one of the ingress's ports fails the check while an API vhost exists. ``userland_proxies`` is the
    host's docker-proxy processes (``pgrep -a`` lines), None when they could not be listed. Each allowlist is
    evidence, with the reason for entries beyond the private and local ranges."""
    api = [vhost for vhost in vhosts if vhost.get("policy") == "api"]
    if not api:
        return _check("api_clients", ["no machine-API vhost: nothing trusts a client address"], [])
    ports = {int(port) for port in ingress_host_ports}
    evidence, failures, warnings = [], [], []
    if userland_proxies is None:
        warnings.append("the host's processes could not be listed (pgrep): whether Docker's userland proxy relays "
                        "Caddy's ports is unknown")
    else:
        relaying = [line.strip() for line in userland_proxies if _relayed_port(line) in ports]
        if relaying:
            failures.append(
                f"Docker's userland proxy relays Caddy's ports ({'; '.join(relaying)}), so every client of "
                f"{', '.join(v['fqdn'] for v in api)} arrives from a bridge gateway; run the engine with "
                "userland-proxy false (docker_host does)")
        else:
            evidence.append(f"no docker-proxy process relays Caddy's ports ({len(userland_proxies)} on the host): "
                            "the engine NATs them, clients keep their own addresses")
    for vhost in api:
        evidence.append(f"{vhost['fqdn']}: allowlist {' '.join(vhost.get('allowlist') or []) or '(none)'}")
        wide = vhost.get("allowlist_wide") or []
        if wide:
            reason = str(vhost.get("allowlist_reason") or "").strip()
            line = f"{vhost['fqdn']}: admits {' '.join(wide)} beyond the private and local ranges"
            if reason:
                evidence.append(f"{line}, by intent ({reason})")
            else:
                failures.append(f"{line} without an allowlist_reason")
    return _check("api_clients", evidence, failures, warnings)


# --- secrets ---------------------------------------------------------------------------------------------------


def _mode(entry):
    return int(str(entry.get("mode", "0")), 8)


def _owner(entry):
    return entry.get("pw_name") or str(entry.get("uid"))


def _is_env_file(path):
    name = path.rsplit("/", 1)[-1]
    return name == ".env" or name.startswith(".env.") or name.endswith(".env")


def _is_handed_over(path, base_dir):
    """<base>/<service>/secrets/<file>: a secret handed to a container (owned by the container's user)."""
    rel = path[len(base_dir.rstrip("/")) + 1:] if path.startswith(base_dir.rstrip("/") + "/") else ""
    parts = rel.split("/")
    return len(parts) == 3 and parts[1] == "secrets"


def check_secrets(store_stat, store_files, base_files, base_dir, now, max_age_days=365, age_fails=False):
    """The store: a 0700 root directory of 0600 root files. .env files and the secrets handed to containers: no
    group or other access (owned by root when the engine reads them, by the container's user when it does). Ages
    are reported; old secrets warn (fail only with ``age_fails``)."""
    evidence, failures, warnings = [], [], []
    path = store_stat.get("path", "secret store")
    if not store_stat.get("exists"):
        failures.append(f"{path}: missing")
    elif not store_stat.get("isdir"):
        failures.append(f"{path}: not a directory")
    else:
        mode, owner = _mode(store_stat), _owner(store_stat)
        line = f"{path}: directory {mode:04o} {owner}"
        if mode & 0o077 or store_stat.get("uid") != 0:
            failures.append(f"{line} (expected 0700 root)")
        else:
            evidence.append(line)
    oldest = None
    for entry in sorted(store_files, key=lambda e: e["path"]):
        mode, owner = _mode(entry), _owner(entry)
        age_days = (now - float(entry.get("mtime", now))) / 86400.0
        if oldest is None or age_days > oldest[1]:
            oldest = (entry["path"], age_days)
        if mode & 0o077 or entry.get("uid") != 0:
            failures.append(f"{entry['path']}: {mode:04o} {owner} (expected 0600 root)")
        if max_age_days and age_days > float(max_age_days) and not entry.get("isdir"):
            (failures if age_fails else warnings).append(
                f"{entry['path']}: last written {age_days:.0f} days ago (rotate: older than {max_age_days} days)")
    evidence.append(f"{len(store_files)} entries in the store, all checked for 0600 root")
    if oldest:
        evidence.append(f"oldest store entry: {oldest[0]}, {oldest[1]:.1f} days")
    env_files = [e for e in base_files if _is_env_file(e["path"])]
    handed = [e for e in base_files if _is_handed_over(e["path"], base_dir)]
    for entry in sorted(env_files, key=lambda e: e["path"]):
        mode, owner = _mode(entry), _owner(entry)
        line = f"{entry['path']}: {mode:04o} {owner}"
        if mode & 0o077:
            failures.append(f"{line} (.env files must be 0600: no group or other access)")
        else:
            evidence.append(line)
    for entry in sorted(handed, key=lambda e: e["path"]):
        mode, owner = _mode(entry), _owner(entry)
        if mode & 0o077:
            failures.append(f"{entry['path']}: {mode:04o} {owner} (a container's secret must not be group or "
                            "world accessible)")
    evidence.append(f"{len(handed)} secret files handed to containers, none group or world accessible"
                    if not any("container's secret" in f for f in failures)
                    else f"{len(handed)} secret files handed to containers")
    return _check("secrets", evidence, failures, warnings)


# --- backup ----------------------------------------------------------------------------------------------------


def check_backup(services, containers, prefix, last_success, last_run, now_dt, max_age_hours=26,
                 backup_service="backup"):
    """A backup service runs and its last successful snapshot is recent enough (or it started recently and has
    not run yet); every active service with volumes to back up is in that snapshot."""
    evidence, failures, warnings = [], [], []
    to_back_up = sorted(name for name, svc in services.items()
                        if any(_flag(v.get("backup")) for v in svc.get("volumes", [])))
    evidence.append(f"services with volumes to back up: {', '.join(to_back_up) or 'none'}")
    if backup_service not in services:
        failures.append(f"no '{backup_service}' service in the registry's active services: the volumes of "
                        f"{', '.join(to_back_up) or 'no service'} are not backed up on a schedule")
        return _check("backup", evidence, failures)
    container = next((c for c in containers if container_service(c, prefix) == backup_service), None)
    if container is None or not _running(container):
        failures.append(f"the backup container {prefix}{backup_service} is not running")
        return _check("backup", evidence, failures)
    started = parse_time((container.get("State") or {}).get("StartedAt"))
    evidence.append(f"{container_name(container)} running since {started.isoformat() if started else 'unknown'}")
    if last_run:
        evidence.append(f"last run: started {last_run.get('started')}, ok {last_run.get('ok')}, schedule "
                        f"{last_run.get('schedule')}")
        if last_run.get("ok") is False:
            warnings.append(f"the last run failed: {last_run.get('error') or 'no error recorded'}")
    finished = parse_time((last_success or {}).get("finished"))
    if last_success and finished:
        age = _age_hours(finished, now_dt)
        line = (f"last snapshot {last_success.get('snapshot_id')} finished {finished.isoformat()} "
                f"({age:.1f} h ago, limit {max_age_hours} h)")
        if age > float(max_age_hours):
            failures.append(f"{line}: too old")
        else:
            evidence.append(line)
        covered = set(last_success.get("services") or [])
        missing = [name for name in to_back_up if name not in covered]
        if missing:
            warnings.append(f"the last snapshot does not include {', '.join(missing)}")
    elif started and _age_hours(started, now_dt) <= float(max_age_hours):
        evidence.append(f"no snapshot yet, container up since {started.isoformat()}")
    else:
        failures.append(f"no successful snapshot within {max_age_hours} h")
    return _check("backup", evidence, failures, warnings)


# --- KFuncDB ---------------------------------------------------------------------------------------------------


def _env(container):
    env = {}
    for item in (container.get("Config") or {}).get("Env") or []:
        key, _sep, value = item.partition("=")
        env[key] = value
    return env


def check_kfuncdb(services, containers, prefix, max_capabilities, service="kfuncdb"):
    """The running KFuncDB's effective policy (KFUNCDB_ALLOW_CAPS) grants nothing beyond the allowed maximum."""
    container = next((c for c in containers if container_service(c, prefix) == service), None)
    if service not in services:
        if container is not None:
            return _check("kfuncdb", [], [f"{container_name(container)} runs although the registry leaves "
                                          f"'{service}' out of this mode"])
        return _check("kfuncdb", [f"'{service}' is not part of this mode: nothing to check"], [])
    if container is None or not _running(container):
        return _check("kfuncdb", [], [f"{prefix}{service} is not running: its policy cannot be verified"])
    raw = _env(container).get("KFUNCDB_ALLOW_CAPS")
    if raw is None:
        return _check("kfuncdb", [], [f"{container_name(container)} has no KFUNCDB_ALLOW_CAPS"])
    caps = sorted({c.strip() for c in raw.split(",") if c.strip()})
    allowed = sorted({str(c).strip() for c in max_capabilities})
    evidence = [f"{container_name(container)}: KFUNCDB_ALLOW_CAPS={','.join(caps) or '(none)'}",
                f"allowed at most: {','.join(allowed) or '(none)'}"]
    widened = [c for c in caps if c not in allowed]
    failures = [f"capabilities widened beyond the audited maximum: {', '.join(widened)}"] if widened else []
    return _check("kfuncdb", evidence, failures)


# --- images ----------------------------------------------------------------------------------------------------


def split_image(reference):
    """(repository, tag or digest) with Docker Hub's implicit prefixes removed; tag '' when none is given."""
    ref = str(reference or "").strip()
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        tag = "@" + digest
    else:
        slash = ref.rfind("/")
        colon = ref.rfind(":")
        repo, tag = (ref[:colon], ref[colon + 1:]) if colon > slash else (ref, "")
    for implicit in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/"):
        if repo.startswith(implicit):
            repo = repo[len(implicit):]
            break
    return repo, tag


def check_images(services, containers, prefix, pins, ids, rollback_pins=None):
    """Each stack container runs the image its role pins (repository and tag; repository only for images the
    roles build, whose tag fingerprints the build context) and the image ID that reference has now: a tag moved
    by a pull without recreating the container means an outdated container. A service rolled back on purpose
    (stack_image_pins, playbooks/update.yml) must run exactly the image id it is pinned to; that warns."""
    rollback_pins = rollback_pins or {}
    evidence, failures, warnings = [], [], []
    for container in sorted(containers, key=container_name):
        service = container_service(container, prefix)
        if service not in services:
            continue
        name = container_name(container)
        ref = (container.get("Config") or {}).get("Image", "")
        repo, tag = split_image(ref)
        pin = pins.get(service)
        running_id = container.get("Image", "")
        if service in rollback_pins:
            if running_id == rollback_pins[service]:
                warnings.append(f"{name} runs {running_id[:19]}: rolled back on purpose (stack_image_pins)")
            else:
                failures.append(f"{name} runs {running_id[:19]}, stack_image_pins says {rollback_pins[service][:19]}")
            continue
        if not pin:
            warnings.append(f"{name} runs {ref}: no pinned image known for '{service}' (registry image_var)")
            continue
        pin_repo, pin_tag = split_image(pin)
        if repo != pin_repo or (pin_tag and tag != pin_tag):
            failures.append(f"{name} runs {ref}, the inventory pins {pin}: deploy to update")
            continue
        current = ids.get(_normal_ref(ref))
        if current is None:
            warnings.append(f"{name} runs {ref} ({running_id[:19]}), which is no longer present locally")
        elif current != running_id:
            failures.append(f"{name} runs {running_id[:19]} but {ref} is now {current[:19]}: recreate the container")
        else:
            evidence.append(f"{name}: {ref} ({running_id[:19]}) as pinned")
    return _check("images", evidence, failures, warnings)


# --- Docker socket and privileges ------------------------------------------------------------------------------


def check_docker_socket(services, containers, prefix):
    """Only services the registry marks docker_socket (with a reason) mount the engine's socket, read-only."""
    evidence, failures = [], []
    for container in sorted(containers, key=container_name):
        service = container_service(container, prefix)
        intent = services.get(service, {})
        name = container_name(container)
        for mount in container.get("Mounts") or []:
            source, dest = str(mount.get("Source", "")), str(mount.get("Destination", ""))
            if not (source.endswith(SOCKET_SUFFIX) or dest.endswith(SOCKET_SUFFIX)):
                continue
            line = f"{name} mounts {source} at {dest} ({'read-write' if mount.get('RW') else 'read-only'})"
            if not _flag(intent.get("docker_socket")) or not _reason(intent, "docker_socket_reason"):
                failures.append(f"{line}: the registry does not declare docker_socket with a reason for '{service}'")
            elif mount.get("RW"):
                failures.append(f"{line}: must be read-only")
            else:
                evidence.append(f"{line}: {_reason(intent, 'docker_socket_reason')}")
    if not evidence and not failures:
        evidence.append("no container mounts the Docker socket")
    return _check("docker_socket", evidence, failures)


def check_privileges(services, containers, prefix):
    """Every stack container: all capabilities dropped and only the registry's cap_add (with cap_add_reason) added
    back, not privileged, no-new-privileges unless the registry says why not, and not root unless run_as_root
    with a reason."""
    evidence, failures = [], []
    for container in sorted(containers, key=container_name):
        service = container_service(container, prefix)
        intent = services.get(service, {})
        name = container_name(container)
        host = container.get("HostConfig") or {}
        user = (container.get("Config") or {}).get("User") or ""
        added = sorted({normalize_cap(c) for c in host.get("CapAdd") or []})
        dropped = {normalize_cap(c) for c in host.get("CapDrop") or []}
        declared = {normalize_cap(c) for c in intent.get("cap_add") or []}
        nnp = any(str(opt).startswith("no-new-privileges") and not str(opt).endswith(":false")
                  for opt in host.get("SecurityOpt") or [])
        problems = []
        if host.get("Privileged"):
            problems.append("runs privileged")
        if "ALL" not in dropped:
            problems.append("does not drop all capabilities")
        undeclared = [c for c in added if c not in declared]
        if undeclared:
            problems.append(f"adds capabilities {', '.join(undeclared)} the registry does not declare (cap_add)")
        elif added and not _reason(intent, "cap_add_reason"):
            problems.append("adds capabilities without a cap_add_reason in the registry")
        if not nnp and (_flag(intent.get("no_new_privileges"), True) or not _reason(intent, "no_new_privileges_reason")):
            problems.append("runs without no-new-privileges")
        root = runs_as_root(user)
        if root and (not _flag(intent.get("run_as_root")) or not _reason(intent, "run_as_root_reason")):
            problems.append(f"runs as root (user '{user or 'image default'}') without run_as_root and a reason in "
                            "the registry")
        summary = (f"{name}: user {user or 'image default (root)'}, cap_add {','.join(added) or 'none'}, "
                   f"no-new-privileges {'yes' if nnp else 'no'}")
        if problems:
            failures.append(f"{summary}: {'; '.join(problems)}")
        else:
            reasons = [_reason(intent, k) for k in ("cap_add_reason", "run_as_root_reason", "no_new_privileges_reason")
                       if (k == "cap_add_reason" and added) or (k == "run_as_root_reason" and root)
                       or (k == "no_new_privileges_reason" and not nnp)]
            evidence.append(summary + (f" ({'; '.join(reasons)})" if reasons else ""))
    return _check("privileges", evidence, failures)


# --- evidence helpers (used by roles/audit) --------------------------------------------------------------------


def check_secret_exposure(exposure):
    """No value of the secret store (or of a root-only env file) in what `docker inspect` shows of a container:
    the environment, command, labels, mounts. The evidence names containers and secrets, never a value."""
    exposure = exposure or {}
    checked = list(exposure.get("checked") or [])
    failures = [f"{item.get('container')} holds the secret {item.get('secret')} in {item.get('field')}"
                for item in exposure.get("findings") or []]
    evidence = [f"{len(checked)} container(s) searched for {int(exposure.get('secrets') or 0)} secret value(s)"]
    if not failures:
        evidence.append("no secret value in any container's environment, command, labels or mounts")
    if not checked:
        failures.append("no container was searched (the evidence is missing)")
    return _check("secret_exposure", evidence, failures)


def select_containers(host_containers, prefix, service_names):
    """Split docker_host_info's container list: the names of the stack's containers (the prefix, and with an empty
    prefix a registry name or the stack's label) and, as minimal inspections, other containers that publish ports."""
    stack, other = [], []
    names = set(service_names)
    for entry in host_containers or []:
        name = str((entry.get("Names") or [""])[0]).lstrip("/")
        labels = entry.get("Labels") or {}
        ours = name.startswith(prefix) if prefix else (name in names or "datamancy.stack.service" in labels)
        if ours:
            stack.append(name)
            continue
        ports = {}
        for port in entry.get("Ports") or []:
            if port.get("PublicPort"):
                key = f"{port.get('PrivatePort')}/{port.get('Type', 'tcp')}"
                ports.setdefault(key, []).append({"HostIp": port.get("IP", ""), "HostPort": str(port["PublicPort"])})
        if ports:
            other.append({"Name": name, "State": {"Running": entry.get("State") == "running"},
                          "NetworkSettings": {"Ports": ports}})
    return {"stack": sorted(stack), "other": other}


def image_ids(images):
    """docker_image_info's images as {reference: image id}, under every tag each carries (normalized)."""
    result = {}
    for image in images or []:
        for tag in image.get("RepoTags") or []:
            repo, ref_tag = split_image(tag)
            result[f"{repo}:{ref_tag}" if ref_tag else repo] = image.get("Id")
        for digest in image.get("RepoDigests") or []:
            repo, ref = split_image(digest)
            result[f"{repo}{ref}"] = image.get("Id")
    return result


def _normal_ref(reference):
    repo, tag = split_image(reference)
    if not tag:
        return f"{repo}:latest"
    return f"{repo}{tag}" if tag.startswith("@") else f"{repo}:{tag}"


def probe_request(vhost):
    """A registry vhost (registry_vhosts) as a vhost_probe request."""
    return {"fqdn": vhost["fqdn"], "path": vhost.get("audit_path") or "/"}


# --- the report ------------------------------------------------------------------------------------------------


def evaluate(evidence, expected):
    """All checks from one evidence bundle (see roles/audit/tasks/main.yml for its shape)."""
    prefix = expected.get("prefix", "")
    services = expected.get("services", {})
    containers = evidence.get("containers", [])
    now = float(evidence.get("now", 0))
    now_dt = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    listeners = []
    for proto, text in sorted((evidence.get("proc_net") or {}).items()):
        listeners.extend(parse_proc_net(text, proto))
    checks = [
        check_sso(expected.get("vhosts", []), evidence.get("probes", []), expected.get("portal_fqdn", "")),
        check_secrets(evidence.get("store_stat", {}), evidence.get("store_files", []),
                      evidence.get("base_files", []), expected.get("base_dir", ""), now,
                      expected.get("secret_max_age_days", 365), _flag(expected.get("secret_age_fails"))),
        check_ports(containers, prefix, expected.get("ingress", "caddy"), expected, listeners,
                    evidence.get("other_containers", []), _flag(expected.get("host_ports_fail"))),
        check_api_clients(expected.get("vhosts", []), evidence.get("userland_proxies"),
                          [b["host_port"] for b in expected.get("ingress_ports", [])]),
        check_backup(services, containers, prefix, evidence.get("last_success"), evidence.get("last_run"), now_dt,
                     expected.get("backup_max_age_hours", 26)),
        check_kfuncdb(services, containers, prefix, expected.get("kfuncdb_max_capabilities", [])),
        check_images(services, containers, prefix, expected.get("image_pins", {}), evidence.get("image_ids", {}),
                     expected.get("rollback_pins") or {}),
        check_docker_socket(services, containers, prefix),
        check_privileges(services, containers, prefix),
        check_secret_exposure(evidence.get("exposure")),
    ]
    failed = [c["id"] for c in checks if c["status"] == FAIL]
    return {
        "generated": now_dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": evidence.get("host", ""),
        "prefix": prefix,
        "mode": expected.get("mode", ""),
        "status": FAIL if failed else WARN if any(c["status"] == WARN for c in checks) else PASS,
        "failed": failed,
        "warned": [c["id"] for c in checks if c["status"] == WARN],
        "checks": checks,
    }


def render_markdown(report):
    icon = {PASS: "PASS", WARN: "WARN", FAIL: "FAIL"}
    lines = [
        f"# Security audit: {report['status'].upper()}",
        "",
        f"Host {report.get('host') or 'unknown'}, mode {report.get('mode') or 'unknown'}, generated "
        f"{report['generated']}.",
        "",
        "| Check | Title | Status |",
        "|---|---|---|",
    ]
    lines += [f"| `{c['id']}` | {c['title']} | {icon[c['status']]} |" for c in report["checks"]]
    for check in report["checks"]:
        lines += ["", f"## `{check['id']}`: {check['title']} ({icon[check['status']]})", ""]
        lines += [f"- FAIL: {item}" for item in check["failures"]]
        lines += [f"- WARN: {item}" for item in check["warnings"]]
        lines += [f"- {item}" for item in check["evidence"]]
    return "\n".join(lines) + "\n"
