# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
name: accelerated_linear
short_description: The linear strategy, run by Mitogen when it is installed
version_added: 0.1.0
description:
  - Task for task the same as C(ansible.builtin.linear). When the Mitogen for Ansible package (C(mitogen)) is
    importable, modules run in persistent interpreters on each host instead of a fresh Python process per task,
    which takes most of the per-task cost away (a no-op converge of the full platform takes about a third of the
    time).
  - Without Mitogen it is exactly C(ansible.builtin.linear), so a controller without the package, an execution
    environment built without it, or C(ANSIBLE_STRATEGY=linear) loses nothing but the speed.
  - Either way, before the first task it loads the plugins every task uses (ansible.builtin's action plugins,
    its and this collection's filters and tests) once in the controller process. Each task runs in a worker forked from it,
    which then inherits them instead of importing them again, once per task and host.
  - The repository's C(ansible.cfg) selects it; C(requirements/python.txt) pins Mitogen with ansible-core.
author:
  - Datamancy maintainers (@datamancy)
'''

try:
    # Importing ansible_mitogen.loaders wires Mitogen into Ansible's plugin loaders; the mixin does the rest
    # while the strategy runs.
    import ansible_mitogen.loaders
    import ansible_mitogen.strategy
except ImportError:
    ansible_mitogen = None  # pylint: disable=invalid-name

import importlib
import pkgutil

from ansible.plugins.loader import action_loader, filter_loader, test_loader
from ansible.plugins.strategy.linear import StrategyModule as LinearStrategyModule

COLLECTION = "datamancy.stack"


def warm_plugins():
    """Load ansible.builtin's action plugins, and its and this collection's filters and tests, into the controller
    process."""
    for _plugin in action_loader.all(class_only=True):
        pass
    for loader, kind in ((filter_loader, "filter"), (test_loader, "test")):
        # Any lookup loads every non-collection (ansible.builtin) plugin of the loader.
        loader.get("ansible.builtin.bool" if kind == "filter" else "ansible.builtin.truthy")
        package = importlib.import_module(f"ansible_collections.datamancy.stack.plugins.{kind}")
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            names = getattr(module, "FilterModule" if kind == "filter" else "TestModule")()
            for name in (names.filters() if kind == "filter" else names.tests()):
                loader.get(f"{COLLECTION}.{name}")


if ansible_mitogen is not None:
    _Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)
else:
    _Base = LinearStrategyModule

_Mixins = (ansible_mitogen.strategy.StrategyMixin,) if ansible_mitogen is not None else ()


class StrategyModule(*_Mixins, _Base):  # pylint: disable=too-few-public-methods
    """The linear strategy (with Mitogen's mixin when installed: what Mitogen's own mitogen_linear is)."""

    def run(self, iterator, play_context):
        warm_plugins()
        return super().run(iterator, play_context)
