"""Tests for cocos.services: port resolution, port-taken errors, and a real up/status/down cycle.

Run: pytest tests/cocos/test_services.py -q   (the `slow` ones start SeaweedFS + MLflow, ~15 s)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time

import psutil
import pytest

from cocos import services


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_resolve_ports_env_then_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COCOS_PORT_S3", "20001")
    monkeypatch.setenv("COCOS_PORT_MLFLOW", "20002")
    ports = services.resolve_ports({"mlflow": 20003})
    assert ports["s3"] == 20001
    assert ports["mlflow"] == 20003
    assert ports["master"] == services.DEFAULT_PORTS["master"]


def test_resolve_ports_rejects_unknown_key_and_collisions() -> None:
    with pytest.raises(services.ServicesError, match="unknown key 'webdav'"):
        services.resolve_ports({"webdav": 20000})
    with pytest.raises(services.ServicesError, match="collide"):
        services.resolve_ports({"s3": 20000, "mlflow": 20000})
    with pytest.raises(services.ServicesError, match="outside 1024"):
        services.resolve_ports({"s3": 80})


def test_free_ports_are_distinct_and_leave_admin_grpc_free() -> None:
    ports = services.free_ports()
    assert set(ports) == set(services.DEFAULT_PORTS)
    assert len(set(ports.values()) | {ports["admin"] + services.ADMIN_GRPC_OFFSET}) == len(ports) + 1


def test_state_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("COCOS_STATE_DIR", str(tmp_path / "state"))
    assert services.state_path() == (tmp_path / "state").resolve()
    assert services.status()["running"] is False
    with pytest.raises(services.ServicesError, match="cocos services up"):
        services.client_env()


def test_port_taken_names_the_port_and_holder(tmp_path) -> None:
    ports = services.free_ports()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", ports["mlflow"]))
        holder.listen()
        with pytest.raises(
            services.PortInUseError, match=rf"port {ports['mlflow']} for mlflow .* pid {os.getpid()}"
        ):
            services.up(tmp_path / "state", ports)
    assert services.status(tmp_path / "state")["running"] is False


@pytest.mark.slow
def test_up_is_idempotent_and_down_stops_process_groups(tmp_path) -> None:
    state = tmp_path / "state"
    info = services.up(state, services.free_ports())
    try:
        assert not info.reused
        again = services.up(state)
        assert again.reused and again.pids == info.pids
        report = services.status(state)
        assert report["running"] and report["services"]["mlflow"]["healthy"]
        env = services.client_env(state)
        assert env["MLFLOW_TRACKING_URI"] == info.tracking_uri
        assert env["AWS_ENDPOINT_URL"] == info.s3_endpoint
        creds = state / "credentials.json"
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
        assert json.loads(creds.read_text())["secret_key"] == env["AWS_SECRET_ACCESS_KEY"]
        with pytest.raises(services.ServicesError, match="services down"):
            services.up(state, services.free_ports())
        # A crashed service is noticed: the next `up` restarts both on the same ports.
        os.killpg(info.pids["mlflow"], signal.SIGKILL)
        restarted = services.up(state)
        assert not restarted.reused and restarted.ports == info.ports
        assert restarted.pids["mlflow"] != info.pids["mlflow"]
        assert services.status(state)["running"]
    finally:
        result = services.down(state)
    assert result == {"mlflow": "stopped", "seaweedfs": "stopped"}
    assert not any(_running(pid) for pid in [*info.pids.values(), *restarted.pids.values()])
    assert services.status(state)["running"] is False
    assert (state / "mlflow.db").is_file() and (state / "seaweedfs").is_dir()
    assert services.down(state) == {"mlflow": "not running", "seaweedfs": "not running"}


@pytest.mark.slow
def test_watchdog_stops_services_when_owner_dies(tmp_path) -> None:
    state = tmp_path / "state"
    owner = subprocess.Popen(["sleep", "600"])
    try:
        info = services.up(state, services.free_ports(), owner_pid=owner.pid)
        assert services.status(state)["running"]
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_running(pid) for pid in info.pids.values()):
        time.sleep(0.5)
    try:
        assert not services.status(state)["running"]
        assert not any(_running(pid) for pid in info.pids.values())
        assert "owner process" in (state / "logs" / "watchdog.log").read_text()
    finally:
        services.down(state)


@pytest.mark.slow
def test_live_services_fixture_sets_client_env(live_services: services.ServiceInfo) -> None:
    assert os.environ["MLFLOW_TRACKING_URI"] == live_services.tracking_uri
    assert os.environ["AWS_ENDPOINT_URL"] == live_services.s3_endpoint
    assert services.status(live_services.state_dir)["running"]
