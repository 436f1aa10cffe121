"""Without root, the fork server becomes root of its own user namespace (only the caller's uid mapped)
and keeps the network and per-job PID namespaces; candidates keep no capability. Checked by running
the server as uid 65534 (needs root to switch to it, setpriv, and an interpreter that uid can run).

Run: pytest tests/sandbox/test_userns.py -q   (a few seconds)
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

from cocos.sandbox.executor import SERVER_SCRIPT

PYTHON = shutil.which("python3", path="/usr/bin:/bin")
LIMITS = {"timeout_s": 2.0, "memory_mb": 512, "output_bytes": 1 << 20, "nproc": 64, "nofile": 64}

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv") or PYTHON is None,
    reason="needs root, setpriv and /usr/bin/python3",
)


@pytest.fixture(scope="module")
def unprivileged_server():
    folder = tempfile.mkdtemp(prefix="cocos-userns-")
    os.chown(folder, 65534, 65534)
    sock = os.path.join(folder, "server.sock")
    command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", PYTHON, "-I", "-B"]
    process = subprocess.Popen([*command, str(SERVER_SCRIPT), sock], stdout=subprocess.PIPE, env={"PATH": "/usr/bin"})
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline() or b"{}")
        if not ready.get("layers", {}).get("userns"):
            pytest.skip(f"no unprivileged user namespaces here: {ready}")
        yield sock, ready["layers"]
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def run(sock: str, code: str, tests: list[str]) -> list[tuple[str, str | None, str]]:
    data = json.dumps({"code": code, "tests": tests, "setup": "", "limits": LIMITS}).encode()
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(30)
        conn.connect(sock)
        conn.sendall(struct.pack("!I", len(data)) + data)
        (size,) = struct.unpack("!I", conn.recv(4, socket.MSG_WAITALL))
        reply = json.loads(conn.recv(size, socket.MSG_WAITALL))
    return [(o["status"], o["error_type"], o["message"]) for o in reply["outcomes"]]


def test_layers_without_root(unprivileged_server):
    _sock, layers = unprivileged_server
    assert layers["userns"] and layers["netns"] and layers["pidns"] and not layers["root"]


def test_verdicts_pid_namespace_and_no_capabilities(unprivileged_server):
    sock, _ = unprivileged_server
    assert [o[0] for o in run(sock, "def f(x):\n    return x", ["assert f(1) == 1", "assert f(1) == 2"])] == [
        "passed",
        "failed",
    ]
    probe = "import os\nassert False, (os.getpid(), open('/proc/self/status').read().split('CapEff:')[1].split()[0])"
    ((status, _, message),) = run(sock, "", [probe])
    assert status == "failed" and message == "(2, '0000000000000000')"


def test_no_network_and_no_write_outside(unprivileged_server):
    sock, _ = unprivileged_server
    ((status, error_type, _),) = run(sock, "import socket", ["socket.create_connection(('1.1.1.1', 80), timeout=1)"])
    assert status == "error" and error_type == "OSError"
    target = Path(__file__)  # owned by root: the namespace's root is uid 65534 outside
    ((status, error_type, _),) = run(sock, "", [f"open({str(target)!r}, 'a').write('#')"])
    assert status == "error" and error_type == "PermissionError"
