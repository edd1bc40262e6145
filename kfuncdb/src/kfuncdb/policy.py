"""The capability policy (KFUNCDB_ALLOW_CAPS).

Deliberately stricter than the original service: an empty list allows nothing privileged (not everything), an
unknown name stops startup instead of being ignored, and the check runs at plugin load AND before every call.
"""
from __future__ import annotations

# Every capability a plugin may declare. browser.control is a known name (a policy may list it), but this build
# registers no plugin for it: there is no browser service to drive.
KNOWN_CAPABILITIES = frozenset({"host.shell.read", "host.docker.inspect", "host.ssh.exec", "browser.control"})


class PolicyError(ValueError):
    """The configured policy is invalid; the service must not start."""


class CapabilityRefused(Exception):
    """A tool needs a capability the policy does not grant."""

    def __init__(self, tool: str, missing: list[str]):
        self.tool = tool
        self.missing = sorted(missing)
        super().__init__(
            f"tool '{tool}' needs capability {', '.join(self.missing)}, which KFUNCDB_ALLOW_CAPS does not allow")


class Policy:
    def __init__(self, allowed: frozenset[str]):
        unknown = sorted(allowed - KNOWN_CAPABILITIES)
        if unknown:
            raise PolicyError(
                f"KFUNCDB_ALLOW_CAPS names unknown capability {', '.join(repr(u) for u in unknown)}; "
                f"known capabilities: {', '.join(sorted(KNOWN_CAPABILITIES))}")
        self.allowed = frozenset(allowed)

    @classmethod
    def parse(cls, value: str | None) -> "Policy":
        """'a,b' -> Policy({a, b}). Empty or unset -> nothing privileged. Blank items (a,,b) are an error: a
        typo in a security setting should be loud."""
        text = (value or "").strip()
        if not text:
            return cls(frozenset())
        names = [item.strip() for item in text.split(",")]
        if any(not name for name in names):
            raise PolicyError(f"KFUNCDB_ALLOW_CAPS has an empty item: {value!r}")
        return cls(frozenset(names))

    def missing(self, required) -> list[str]:
        return sorted(set(required) - self.allowed)

    def check(self, tool: str, required) -> None:
        missing = self.missing(required)
        if missing:
            raise CapabilityRefused(tool, missing)
