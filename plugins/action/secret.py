# -*- coding: utf-8 -*-
# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of datamancy.stack.secret (also used by authelia_oidc_keys).

A module cannot mark its own result no_log: ansible-core strips ``_ansible_no_log`` from module output, and values
put in ``module.no_log_values`` are replaced by ``********`` in the result itself, which would make them useless for
templating. So when ``return_values`` is requested this action plugin runs the module and marks the result
``_ansible_no_log``: every callback then prints it censored (at any verbosity) even if the task forgot ``no_log``,
while ``register`` still receives the values.
"""

from __future__ import annotations

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):

    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        wants_values = boolean(self._task.args.get('return_values', False), strict=False)
        result.update(self._execute_module(module_name=self._task.resolved_action or self._task.action,
                                           module_args=self._task.args, task_vars=task_vars))
        if wants_values:
            result['_ansible_no_log'] = True
        return result
