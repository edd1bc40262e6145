"""Built-in plugins. Each declares the capabilities its tools need; the registry activates it only when the
policy grants all of them."""
from __future__ import annotations

from .docker import DockerInspectPlugin
from .llm import LlmPlugin
from .shell import ShellReadPlugin
from .ssh import StackopsSshPlugin


def builtin_plugins() -> list:
    # browser.control has no plugin: there is no browser service in the stack to drive, and a stub that
    # pretends would be worse than an honest absence.
    return [ShellReadPlugin(), DockerInspectPlugin(), StackopsSshPlugin(), LlmPlugin()]
