"""Tools, plugins and the registry that runs them under the policy with a deadline."""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import time
from typing import Any, Callable

from . import schema as jsonschema
from .policy import KNOWN_CAPABILITIES, CapabilityRefused, Policy

log = logging.getLogger("kfuncdb.registry")

Handler = Callable[[dict, float], Any]  # (validated args, monotonic deadline) -> JSON-serialisable result


class ToolError(Exception):
    """The tool ran and failed (remote refused, host key mismatch, upstream error): reported as 502."""


class ConfigError(Exception):
    """A plugin that the policy allows is missing its configuration: the service must not start."""


class UnknownTool(LookupError):
    pass


class InvalidArguments(ValueError):
    def __init__(self, tool: str, errors: list[str]):
        self.errors = errors
        super().__init__(f"invalid arguments for '{tool}': {'; '.join(errors)}")


class ToolTimeout(TimeoutError):
    pass


@dataclasses.dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict


class Plugin:
    """A group of tools needing the same capabilities. ``activate`` runs only when the policy grants every one of
    them, so a refused plugin never even reads its key files or opens a connection."""

    id: str = ""
    description: str = ""
    capabilities: frozenset[str] = frozenset()

    def specs(self) -> list[ToolSpec]:
        raise NotImplementedError

    def activate(self, env: dict) -> dict[str, Handler]:
        raise NotImplementedError


@dataclasses.dataclass
class Tool:
    spec: ToolSpec
    plugin: str
    capabilities: frozenset[str]
    handler: Handler | None  # None: refused at load

    def describe(self, policy: Policy) -> dict:
        missing = policy.missing(self.capabilities)
        entry = {
            "name": self.spec.name,
            "description": self.spec.description,
            "parameters": self.spec.parameters,
            "plugin": self.plugin,
            "capabilities": sorted(self.capabilities),
            "available": self.handler is not None and not missing,
        }
        if missing:
            entry["missingCapabilities"] = missing
        return entry


class Registry:
    def __init__(self, policy: Policy, timeout_s: float, max_workers: int = 8):
        self.policy = policy
        self.timeout_s = timeout_s
        self.tools: dict[str, Tool] = {}
        # Tools run in worker threads so a call can be abandoned at its deadline. Subprocess-based tools also get
        # the deadline and kill their child, so an abandoned worker does not stay busy for long.
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tool")

    def load(self, plugin: Plugin, env: dict) -> None:
        """Register a plugin's tools; activate it only if the policy grants all its capabilities (load-time check).
        Refused tools stay listed (marked unavailable) so a caller gets 403 naming the capability, not 404."""
        unknown = set(plugin.capabilities) - KNOWN_CAPABILITIES
        if unknown:
            raise ConfigError(f"plugin '{plugin.id}' declares unknown capability {', '.join(sorted(unknown))}")
        specs = plugin.specs()
        for spec in specs:
            jsonschema.check_schema(spec.parameters)
            if spec.name in self.tools:
                raise ConfigError(f"tool '{spec.name}' of plugin '{plugin.id}' is already registered")
        missing = self.policy.missing(plugin.capabilities)
        handlers: dict[str, Handler] = {}
        if missing:
            log.info("plugin %s not activated: capability %s not allowed", plugin.id, ", ".join(missing))
        else:
            handlers = plugin.activate(env)
            absent = {spec.name for spec in specs} - set(handlers)
            if absent:
                raise ConfigError(f"plugin '{plugin.id}' gave no handler for {', '.join(sorted(absent))}")
            log.info("plugin %s active: %s", plugin.id, ", ".join(spec.name for spec in specs))
        for spec in specs:
            self.tools[spec.name] = Tool(spec, plugin.id, frozenset(plugin.capabilities), handlers.get(spec.name))

    def describe(self) -> list[dict]:
        return [tool.describe(self.policy) for tool in sorted(self.tools.values(), key=lambda t: t.spec.name)]

    def available(self) -> list[Tool]:
        return [t for t in self.tools.values() if t.handler is not None and not self.policy.missing(t.capabilities)]

    def call(self, name: str, args) -> tuple[Any, int]:
        """Run a tool: (result, elapsed ms). Raises UnknownTool, CapabilityRefused, InvalidArguments, ToolTimeout,
        ToolError."""
        tool = self.tools.get(name)
        if tool is None:
            raise UnknownTool(name)
        # Call-time check: the policy object is consulted again for every call, whatever happened at load.
        self.policy.check(name, tool.capabilities)
        if tool.handler is None:  # pragma: no cover - only reachable if the policy changed after load
            raise CapabilityRefused(name, sorted(tool.capabilities))
        errors = jsonschema.validate(tool.spec.parameters, args)
        if errors:
            raise InvalidArguments(name, errors)
        args = jsonschema.with_defaults(tool.spec.parameters, args)
        started = time.monotonic()
        deadline = started + self.timeout_s
        future = self._pool.submit(tool.handler, args, deadline)
        try:
            result = future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ToolTimeout(f"tool '{name}' did not finish within {self.timeout_s:g} s") from None
        return result, int((time.monotonic() - started) * 1000)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def remaining(deadline: float) -> float:
    """Seconds left before ``deadline`` (at least a sliver, so a subprocess timeout is never 0 or negative)."""
    return max(0.05, deadline - time.monotonic())


__all__ = ["CapabilityRefused", "ConfigError", "InvalidArguments", "Plugin", "Registry", "Tool", "ToolError",
           "ToolSpec", "ToolTimeout", "UnknownTool", "remaining"]
