# -*- coding: utf-8 -*-
# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of datamancy.stack.authelia_oidc_keys: censors the result when values are returned."""

from __future__ import annotations

from ansible_collections.datamancy.stack.plugins.action.secret import ActionModule as _SecretAction


class ActionModule(_SecretAction):
    pass
