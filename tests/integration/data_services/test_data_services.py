"""The data services of full mode (qdrant, clickhouse) converged for real on this machine's engine and checked
from containers on the stack's networks, the only place they can be reached from.

Qdrant is the harness's stand-in (tests/images/qdrant-standin: Qdrant's REST subset, the key enforced the same
way), ClickHouse the harness's Debian 18.16 build. One isolated deployment: a second run changes nothing; Qdrant
refuses requests without the key and shows the bootstrapped collection with it; ClickHouse refuses anonymous and
wrong credentials and answers the generated ones, with the bootstrapped tables; neither is on or reachable from
`frontend`; uninstalling keeps the volumes, and reinstalling brings back the data written before.

The generated key and passwords are read from the deployment's store (a temporary directory destroyed at the end)
and handed to the probe containers inside their code, never printed by the assertions.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from stacklib import StackDeployment, clickhouse, http, qdrant

HERE = Path(__file__).resolve().parent
PLAYBOOK = "tests/integration/data_services/converge.yml"

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack():
    deployment = StackDeployment(extra_vars=yaml.safe_load((HERE / "vars.yml").read_text()))
    try:
        first = deployment.playbook(PLAYBOOK)
        assert first.returncode == 0, first.output[-6000:]
        deployment.second_run = deployment.playbook(PLAYBOOK)
        deployment.qdrant_key = deployment.read_secret("qdrant_api_key").strip()
        deployment.admin_password = deployment.read_secret("clickhouse_admin_password").strip()
        deployment.app_password = deployment.read_secret("clickhouse_app_password").strip()
        yield deployment
    finally:
        deployment.destroy()


def test_a_second_run_changes_nothing(stack):
    run = stack.second_run
    assert run.returncode == 0, run.output[-6000:]
    assert run.changed == 0, run.changed_tasks()


def test_qdrant_refuses_requests_without_the_right_key(stack):
    without, wrong = http(stack, "database", qdrant("/collections"), qdrant("/collections", key="not-the-key"))
    assert without["status"] == 401, without
    assert wrong["status"] == 401, wrong


def test_qdrant_with_the_key_has_the_bootstrapped_collection(stack):
    listing, documents = http(stack, "database", qdrant("/collections", stack.qdrant_key),
                              qdrant("/collections/documents", stack.qdrant_key))
    assert listing["status"] == 200, listing
    assert [c["name"] for c in json.loads(listing["body"])["result"]["collections"]] == ["documents"]
    assert documents["status"] == 200, documents
    assert json.loads(documents["body"])["result"]["config"]["params"]["vectors"] == {"size": 384,
                                                                                      "distance": "Cosine"}


def test_clickhouse_refuses_anonymous_and_wrong_credentials(stack):
    anonymous, default_user, wrong = http(
        stack, "database", clickhouse("SELECT 1"), clickhouse("SELECT 1", "default", ""),
        clickhouse("SELECT 1", "app", "not-the-password"))
    for answer in (anonymous, default_user, wrong):
        assert answer["status"] in (401, 403), answer
        assert answer["body"].strip() != "1"


def test_clickhouse_answers_the_generated_credentials_and_has_the_schema(stack):
    admin, app, tables, other_database = http(
        stack, "database",
        clickhouse("SELECT 1", "admin", stack.admin_password),
        clickhouse("SELECT 1", "app", stack.app_password),
        clickhouse("SELECT name, engine FROM system.tables WHERE database = 'datamancy' ORDER BY name",
                   "app", stack.app_password),
        # The app user is limited to its database.
        clickhouse("CREATE DATABASE elsewhere", "app", stack.app_password))
    assert (admin["status"], admin["body"].strip()) == (200, "1"), admin
    assert (app["status"], app["body"].strip()) == (200, "1"), app
    assert tables["status"] == 200, tables
    assert [line.split("\t") for line in tables["body"].strip().splitlines()] == [
        ["series_meta", "ReplacingMergeTree"], ["series_values", "MergeTree"]]
    assert other_database["status"] != 200, other_database


def test_both_are_on_the_database_network_only(stack):
    for service in ("qdrant", "clickhouse"):
        container = stack.container(service)
        container.reload()
        assert set(container.attrs["NetworkSettings"]["Networks"]) == {stack.network("database")}, service
        assert not container.attrs["HostConfig"]["PortBindings"], service
        assert container.attrs["State"]["Health"]["Status"] == "healthy", service


def test_neither_is_reachable_from_frontend(stack):
    addresses = {}
    for service in ("qdrant", "clickhouse"):
        container = stack.container(service)
        addresses[service] = container.attrs["NetworkSettings"]["Networks"][stack.network("database")]["IPAddress"]
    answers = http(stack, "frontend",
                   {"url": "http://qdrant:6333/readyz"}, {"url": f"http://{addresses['qdrant']}:6333/readyz"},
                   {"url": "http://clickhouse:8123/ping"}, {"url": f"http://{addresses['clickhouse']}:8123/ping"})
    for answer in answers:
        assert answer["status"] is None, answer
    # The same probe on the database network does get through, so the refusals above are the network's doing.
    assert [a["status"] for a in http(stack, "database", {"url": "http://qdrant:6333/readyz"},
                                      {"url": "http://clickhouse:8123/ping"})] == [200, 200]


def test_uninstall_keeps_the_volumes_and_reinstall_keeps_the_data(stack):
    point = {"points": [{"id": 7, "vector": [0.5] * 384, "payload": {"doc": "kept"}}]}
    upsert, insert = http(
        stack, "database", qdrant("/collections/documents/points", stack.qdrant_key, "PUT", point),
        clickhouse("INSERT INTO datamancy.series_values VALUES ('kept', '2026-01-02 03:04:05', 42.5)",
                   "app", stack.app_password))
    assert upsert["status"] == 200, upsert
    assert insert["status"] == 200, insert

    removed = stack.playbook(PLAYBOOK, qdrant_state="absent", clickhouse_state="absent")
    assert removed.returncode == 0, removed.output[-6000:]
    assert {c.name for c in stack.containers()} & {f"{stack.prefix}qdrant", f"{stack.prefix}clickhouse"} == set()
    volume_prefix = stack.vars["stack_volume_prefix"]
    volumes = {v.name for v in stack.docker.volumes.list() if v.name.startswith(volume_prefix)}
    assert {f"{volume_prefix}qdrant_storage", f"{volume_prefix}clickhouse_data"} <= volumes

    again = stack.playbook(PLAYBOOK)
    assert again.returncode == 0, again.output[-6000:]
    changed = again.changed_tasks()
    # Fresh containers on the old volumes: the bootstrap finds everything in place.
    assert not any("Create the missing" in name for name in changed), changed
    stored, row = http(stack, "database", qdrant("/collections/documents/points/7", stack.qdrant_key),
                       clickhouse("SELECT value FROM datamancy.series_values WHERE series_id = 'kept'",
                                  "app", stack.app_password))
    assert stored["status"] == 200, stored
    assert json.loads(stored["body"])["result"]["payload"] == {"doc": "kept"}
    assert (row["status"], row["body"].strip()) == (200, "42.5"), row
