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

from ansible.plugins.strategy.linear import StrategyModule as LinearStrategyModule

if ansible_mitogen is not None:
    _Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)

    class StrategyModule(ansible_mitogen.strategy.StrategyMixin, _Base):
        """Mitogen's mixin over the linear strategy (what Mitogen's own mitogen_linear is)."""

else:

    class StrategyModule(LinearStrategyModule):
        """Mitogen is not installed: the plain linear strategy."""
