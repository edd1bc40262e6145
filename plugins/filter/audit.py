# Copyright: datamancy.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The security audit's evaluation as filters: ``evidence | audit_report(expected)`` and ``report | audit_markdown``.

The logic lives in module_utils/audit.py (unit-tested); roles/audit gathers the evidence on the managed host.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.datamancy.stack.plugins.module_utils.audit import (
    evaluate, image_ids, probe_request, render_markdown, select_containers,
)


def audit_report(evidence, expected):
    """One result per check from the gathered evidence and what the registry says should be."""
    if not isinstance(evidence, dict) or not isinstance(expected, dict):
        raise AnsibleFilterError("audit_report expects the evidence and the expectations as mappings")
    return evaluate(evidence, expected)


def audit_markdown(report):
    """The report as Markdown: a summary table, then each check with its failures, warnings and evidence."""
    return render_markdown(report)


def audit_select_containers(host_containers, prefix, service_names):
    """docker_host_info's containers split into the stack's names and other containers publishing ports."""
    return select_containers(host_containers, prefix, service_names)


def audit_image_ids(images):
    """docker_image_info's images as {normalized reference: image id}."""
    return image_ids(images)


def audit_probe_request(vhost):
    """A registry vhost as a datamancy.stack.vhost_probe request (its audit_path, default /)."""
    return probe_request(vhost)


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {
            "audit_report": audit_report,
            "audit_markdown": audit_markdown,
            "audit_select_containers": audit_select_containers,
            "audit_image_ids": audit_image_ids,
            "audit_probe_request": audit_probe_request,
        }
