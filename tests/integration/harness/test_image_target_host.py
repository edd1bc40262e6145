"""Self-test of the harness's managed-host image (tests/images/target-host), the benchmark's multi-host targets.

A container of it is what the collection's modules run in when bench/run.sh converges several hosts: Python with
the libraries the modules import, and the machine's engine through the mounted socket.
"""
from __future__ import annotations

import pytest

from conftest import local_image

IMAGE = local_image("target-host")

CHECK = """
import socket
import argon2, cryptography, passlib.hash, requests  # noqa: F401
sock = socket.socket(socket.AF_UNIX)
sock.connect("/var/run/docker.sock")
sock.sendall(b"GET /_ping HTTP/1.0\\r\\nHost: docker\\r\\n\\r\\n")
print(sock.recv(4096).decode().splitlines()[0])
"""


@pytest.mark.integration
def test_modules_find_their_libraries_and_the_engine(run_container):
    host = run_container(IMAGE, "target", volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock"}})
    exit_code, output = host.exec_run(["/usr/bin/python3", "-c", CHECK])
    assert exit_code == 0, output.decode()
    assert output.decode().strip() == "HTTP/1.0 200 OK"
