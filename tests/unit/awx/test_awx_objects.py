"""AWX objects as code (awx/objects.yml, playbooks/awx_configure.yml), checked without an AWX.

Ansible itself loads the playbook and renders every awx.awx task's arguments for every loop item, the way a run
would (module_defaults included). Each set of arguments then goes through the real awx.awx module's
AnsibleModule argument validation (its own argument_spec plus the controller auth options, aliases, types,
choices, mutually exclusive options); the module is stopped right after validation, before it would talk to the
API. The surveys are checked against the rules AWX applies when it stores a survey spec.
"""
from __future__ import annotations

import importlib
import ipaddress
import json
import os
import re
import socket
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from ansible import constants as C
from ansible import context
from ansible.inventory.manager import InventoryManager
from ansible.module_utils import basic
from ansible.module_utils.common.collections import ImmutableDict
from ansible.module_utils.testing import patch_module_args
from ansible.parsing.dataloader import DataLoader
from ansible.playbook import Playbook
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar
from ansible.utils.vars import load_extra_vars
from ansible.vars.manager import VariableManager

REPO_ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = "playbooks/awx_configure.yml"
AWX_COLLECTION = REPO_ROOT / ".cache" / "collections" / "ansible_collections" / "awx" / "awx"
# Settings a user gives (awx/objects.yml has no default for them); every optional object switched on.
SETTINGS = {
    "awx_controller_host": "https://awx.example.test",
    "awx_controller_oauthtoken": "test-token-not-a-secret",
    "awx_project_scm_url": "https://git.example.test/ops/datamancy-stack.git",
    "awx_project_scm_credential": "Git deploy key",
    "awx_stack_domain": "example.test",
    "awx_execution_environment_image": "registry.example.test/datamancy-stack-ee:0.1.0",
    "awx_machine_credential_ssh_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-key\n-----END OPENSSH PRIVATE KEY-----",
    "awx_inventory_source_path": "inventories/production/hosts.yml",
}
# Playbooks other work items add; the templates may name them before they land.
PENDING_PLAYBOOKS = {"playbooks/backup.yml", "playbooks/restore_drill.yml", "playbooks/update.yml",
                     "playbooks/rotate_secrets.yml", "playbooks/audit.yml"}
SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}


class Validated(Exception):
    def __init__(self, params):
        super().__init__("validated")
        self.params = params


class Rejected(Exception):
    pass


def render(extra_vars: dict) -> list[dict]:
    """Every awx.awx call the playbook would make: [{task, module, no_log, args}], in order."""
    context.CLIARGS = ImmutableDict(extra_vars=(json.dumps(extra_vars),))
    # ansible-playbook parses -e once per process and memoizes it on the function; this renders several times.
    load_extra_vars.extra_vars = None
    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(REPO_ROOT / "inventories/local/hosts.yml")])
    variables = VariableManager(loader=loader, inventory=inventory)
    playbook = Playbook.load(str(REPO_ROOT / PLAYBOOK), variable_manager=variables, loader=loader)
    host = inventory.get_host("localhost")
    calls = []
    for play in playbook.get_plays():
        for block in play.compile():
            for task in block.block:
                if not task.action.startswith("awx.awx."):
                    continue
                task_vars = variables.get_vars(play=play, host=host, task=task)
                items = Templar(loader=loader, variables=task_vars).template(task.loop) if task.loop else [None]
                loop_var = task.loop_control.loop_var if task.loop_control else "item"
                for item in items:
                    item_vars = dict(task_vars, **({loop_var: item} if task.loop else {}))
                    templar = Templar(loader=loader, variables=item_vars)
                    if not all(templar.evaluate_conditional(condition) for condition in task.when):
                        continue
                    # module_defaults: the play's group/awx.awx.controller entry, which reaches every module in
                    # awx.awx's `controller` action group (checked in test_module_defaults_reach_every_module).
                    defaults = {}
                    for entry in task.module_defaults or []:
                        defaults.update(templar.template(entry.get("group/awx.awx.controller", {})))
                    args = dict(defaults, **templar.template(task.args))
                    calls.append({"task": task.get_name(), "module": task.action.split(".")[-1],
                                  "no_log": bool(task.no_log), "args": json.loads(json.dumps(args)), "item": item})
    return calls


@pytest.fixture(scope="module", autouse=True)
def plugin_loader():
    # The collection finder, configured once per process as ansible-playbook does (awx.awx from .cache/collections).
    init_plugin_loader(C.COLLECTIONS_PATHS)


@pytest.fixture(scope="module")
def calls():
    # plugin_loader (autouse) has configured the collection finder first.
    return render(SETTINGS)


def validate(module_name: str, args: dict, monkeypatch) -> dict:
    """Run the real awx.awx module's argument validation on ``args``; returns the validated params."""
    controller_api = importlib.import_module("ansible_collections.awx.awx.plugins.module_utils.controller_api")
    module = importlib.import_module(f"ansible_collections.awx.awx.plugins.modules.{module_name}")

    def stop(self):  # first call after AnsibleModule.__init__ validated the arguments
        raise Validated(self.params)

    def fail_json(self, msg, **kwargs):
        raise Rejected(msg)

    monkeypatch.setattr(controller_api.ControllerModule, "load_config_files", stop)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    with patch_module_args(args):
        try:
            module.main()
        except Validated as validated:
            return validated.params
    raise AssertionError(f"awx.awx.{module_name} returned without validating its arguments")


def test_every_call_passes_the_module_argument_spec(calls, monkeypatch):
    assert {call["module"] for call in calls} == {"organization", "execution_environment", "credential", "project",
                                                  "inventory", "inventory_source", "job_template", "schedule"}
    for call in calls:
        try:
            params = validate(call["module"], call["args"], monkeypatch)
        except Rejected as error:
            pytest.fail(f"{call['task']} ({call['item'] and call['item'].get('name')}): awx.awx.{call['module']} "
                        f"rejects its arguments: {error}")
        assert params["controller_host"] == SETTINGS["awx_controller_host"]
        assert params["controller_oauthtoken"] == SETTINGS["awx_controller_oauthtoken"]


def test_validation_rejects_a_wrong_argument(calls, monkeypatch):
    """The check has teeth: a misspelt option or a bad choice is refused the way AWX's module would."""
    job_template = next(call for call in calls if call["module"] == "job_template")
    with pytest.raises(Rejected, match="Unsupported parameters"):
        validate("job_template", dict(job_template["args"], survey_enable=True), monkeypatch)
    with pytest.raises(Rejected, match="job_type"):
        validate("job_template", dict(job_template["args"], job_type="deploy"), monkeypatch)


def test_module_defaults_reach_every_module(calls):
    runtime = yaml.safe_load((AWX_COLLECTION / "meta" / "runtime.yml").read_text())
    group = set(runtime["action_groups"]["controller"])
    assert {call["module"] for call in calls} <= group


def test_secrets_are_only_in_no_log_tasks(calls):
    for call in calls:
        if "inputs" in call["args"]:
            assert call["no_log"], f"{call['task']} passes credential inputs without no_log"
    credential = next(call for call in calls if call["module"] == "credential")
    assert credential["args"]["inputs"]["ssh_key_data"] == SETTINGS["awx_machine_credential_ssh_key"]
    assert credential["args"]["update_secrets"] is False


def test_job_templates(calls):
    templates = {call["args"]["name"]: call["args"] for call in calls if call["module"] == "job_template"}
    playbooks = {args["playbook"] for args in templates.values()}
    assert playbooks == {"playbooks/bootstrap.yml", "playbooks/full.yml"} | PENDING_PLAYBOOKS
    for name, args in templates.items():
        # A playbook another work item has not added yet is allowed; one that should be here must be.
        assert (REPO_ROOT / args["playbook"]).is_file() or args["playbook"] in PENDING_PLAYBOOKS, name
        assert args["project"] == "Datamancy stack" and args["inventory"] == "Datamancy hosts"
        assert args["execution_environment"] == "Datamancy stack EE"
        assert args["credentials"] == ["Datamancy hosts SSH"]
        assert args["ask_tags_on_launch"] and args["ask_skip_tags_on_launch"]
        assert args["allow_simultaneous"] is False and args["survey_enabled"] is True


def survey_errors(spec: dict) -> list[str]:
    """The checks AWX makes when a survey spec is stored (api/v2/job_templates/N/survey_spec)."""
    errors = []
    if not isinstance(spec.get("name"), str) or not isinstance(spec.get("description"), str):
        errors.append("name and description must be strings")
    questions = spec.get("spec")
    if not isinstance(questions, list) or not questions:
        return errors + ["spec must be a non-empty list"]
    seen = set()
    for question in questions:
        where = question.get("variable")
        for key in ("question_name", "variable", "type"):
            if not isinstance(question.get(key), str) or not question[key]:
                errors.append(f"{where}: '{key}' missing")
        if where in seen:
            errors.append(f"{where}: variable used twice")
        seen.add(where)
        if question.get("type") not in SURVEY_TYPES:
            errors.append(f"{where}: type {question.get('type')!r}")
        if not isinstance(question.get("required", False), bool):
            errors.append(f"{where}: 'required' must be a boolean")
        default = question.get("default")
        if question.get("type") in ("multiplechoice", "multiselect"):
            choices = question.get("choices")
            if isinstance(choices, str):
                choices = choices.split("\n")
            if not choices:
                errors.append(f"{where}: no choices")
            elif default not in (None, "") and default not in choices:
                errors.append(f"{where}: default {default!r} is not a choice")
        if question.get("type") in ("text", "textarea", "password"):
            low, high = question.get("min"), question.get("max")
            if not isinstance(default, str):
                errors.append(f"{where}: default must be a string")
            elif (low is not None and len(default) < low) or (high is not None and len(default) > high):
                errors.append(f"{where}: default length outside min/max")
    return errors


def test_surveys(calls):
    surveys = {call["args"]["name"]: call["args"]["survey_spec"] for call in calls if call["module"] == "job_template"}
    for name, spec in surveys.items():
        assert survey_errors(spec) == [], name
        variables = {question["variable"]: question for question in spec["spec"]}
        # Every job asks for the domain, pre-filled, and cannot run without one.
        assert variables["stack_domain"]["required"] and variables["stack_domain"]["default"] == "example.test"
    deploy = {name: {q["variable"]: q for q in spec["spec"]} for name, spec in surveys.items()
              if name.split(" - ")[-1] in ("bootstrap", "full", "update")}
    assert len(deploy) == 3
    for questions in deploy.values():
        assert set(questions) == {"stack_domain", "stack_api_default_allowlist", "stack_api_allowlist_reason",
                                  "stack_mode"}
        # Widening the allowlist needs a reason, which the survey asks for without requiring it.
        assert questions["stack_api_allowlist_reason"]["required"] is False
        assert questions["stack_mode"]["choices"] == ["bootstrap", "full"]
        # The answer feeds the registry's allowlist parsing: whitespace-separated CIDRs.
        for cidr in questions["stack_api_default_allowlist"]["default"].split():
            ipaddress.ip_network(cidr)
        assert "172.16.0.0/12" not in questions["stack_api_default_allowlist"]["default"]
    assert deploy["Datamancy - bootstrap"]["stack_mode"]["default"] == "bootstrap"
    assert deploy["Datamancy - full"]["stack_mode"]["default"] == "full"


def test_schedules(calls):
    templates = {call["args"]["name"] for call in calls if call["module"] == "job_template"}
    schedules = [call["args"] for call in calls if call["module"] == "schedule"]
    assert {args["unified_job_template"] for args in schedules} == {
        "Datamancy - backup", "Datamancy - restore drill", "Datamancy - audit"}
    for args in schedules:
        assert args["unified_job_template"] in templates
        assert re.fullmatch(r"DTSTART;TZID=UTC:\d{8}T\d{6} RRULE:FREQ=(DAILY|WEEKLY)(;[A-Z]+=[A-Z0-9,]+)+", args["rrule"])
        # Scheduled jobs get no survey prompt: the required answer travels with the schedule.
        assert args["extra_data"] == {"stack_domain": "example.test"}


def test_optional_objects_are_left_out_when_not_configured():
    settings = {k: v for k, v in SETTINGS.items()
                if k not in ("awx_machine_credential_ssh_key", "awx_inventory_source_path", "awx_project_scm_credential")}
    modules = [call["module"] for call in render(settings)]
    assert "credential" not in modules and "inventory_source" not in modules
    project = next(call for call in render(settings) if call["module"] == "project")
    assert "credential" not in project["args"]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_playbook(*extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "ansible-playbook"), PLAYBOOK, "-v", *extra],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_missing_settings_stop_before_any_change():
    completed = run_playbook()
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0
    assert "Set awx_controller_host" in output
    assert "TASK [Organization]" not in output


def test_a_real_run_reaches_the_api_and_leaks_no_token(tmp_path):
    """The playbook runs for real against a controller address where nothing listens: the first awx.awx task
    passes its argument checks, fails on the connection, and the token appears nowhere in the output."""
    token = f"tok-{uuid.uuid4().hex}"
    settings = dict(SETTINGS, awx_controller_host=f"https://127.0.0.1:{closed_port()}", awx_controller_oauthtoken=token)
    vars_file = tmp_path / "awx.yml"
    vars_file.write_text(yaml.safe_dump(settings))
    completed = run_playbook("-e", f"@{vars_file}")
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0
    assert "TASK [Organization]" in output
    assert re.search(r"Connection refused|Failed to connect|Errno 111", output), output[-3000:]
    assert "Unsupported parameters" not in output and "missing required" not in output
    assert token not in output
    assert SETTINGS["awx_machine_credential_ssh_key"].splitlines()[1] not in output
