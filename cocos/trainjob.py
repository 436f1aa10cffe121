"""Kubeflow Trainer TrainJobs: SFT or RLOO on several nodes, submitted and followed from a pipeline task.

`build_trainjob(TrainJobSpec(...))` is pure: it returns the TrainJob object (trainer.kubeflow.org/v1alpha1) for
N nodes x M GPUs that runs `python -m cocos.train.launch <stage> <args>` under `torchrun` or under
`accelerate launch --use_deepspeed`, with the S3 and MLflow settings taken from the secrets by name (as the
pipeline does), placed by node selector and tolerations through a runtime patch.

`submit_and_follow(trainjob, namespace, timeout_s, poll_s)` creates it, relays the trainer pods' logs to
`logging` and returns when the TrainJob is Complete. It raises `TrainJobFailed` as soon as the TrainJob's
Failed condition is set, any of its pods fails, or a pod cannot start (image pull, missing secret), and
`TrainJobTimeout` after `timeout_s`; in both cases it deletes the TrainJob (`delete_on_error`) so that no GPU
stays held. The kubernetes clients can be passed in (tests pass fakes).

What is covered: one TrainJob against a ClusterTrainingRuntime (default `torch-distributed`) whose replicated
job and container are both named `node`, as the upstream torch runtimes are; fail-fast on pod and job failure.
What is not covered: the runtime itself (install the Trainer and its runtimes from their release manifests),
Kueue admission, restarts (a failed pod fails the run), logs of pods that were replaced between two polls.
Field names follow the upstream CRD; k8s/crds/ holds the subset the tests validate against.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

logger = logging.getLogger(__name__)

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
# The name of the replicated job and of the trainer container in the upstream torch/deepspeed runtimes.
NODE = "node"
# JobSet labels every pod of the JobSet the TrainJob creates; the JobSet has the TrainJob's name.
POD_SELECTOR_LABEL = "jobset.sigs.k8s.io/jobset-name"
PATCH_MANAGER = "cocos/trainjob"
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
MLFLOW_SECRET_KEYS = ("MLFLOW_TRACKING_URI",)
STAGES = ("sft", "rloo")
LAUNCHERS = ("torchrun", "accelerate-deepspeed")
# Waiting reasons a pod does not recover from by waiting longer.
STUCK_REASONS = (
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
)
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class TrainJobError(RuntimeError):
    """A TrainJob did not complete; the message names the job and says why."""


class TrainJobFailed(TrainJobError):
    """The TrainJob or one of its pods failed, or a pod cannot start."""


class TrainJobTimeout(TrainJobError):
    """The TrainJob did not complete within the timeout."""


@dataclass(frozen=True)
class TrainJobSpec:
    """What to run where. `name` becomes the TrainJob's (and its JobSet's) name: an RFC 1035 label, <= 63."""

    name: str
    stage: str
    image: str
    args: Sequence[str] = ()
    num_nodes: int = 1
    gpus_per_node: int = 1
    launcher: str = "torchrun"
    deepspeed_config: str = ""
    runtime: str = "torch-distributed"
    runtime_kind: str = "ClusterTrainingRuntime"
    accelerator: str = "nvidia.com/gpu"
    cpu_per_node: str = "8"
    memory_per_node: str = "64Gi"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    s3_secret: str = "cocos-s3"
    mlflow_secret: str = "cocos-mlflow"
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    active_deadline_s: int | None = None

    def __post_init__(self) -> None:
        if len(self.name) > 63 or not _NAME.match(self.name):
            raise ValueError(
                f"TrainJob name {self.name!r}: the Trainer requires an RFC 1035 label (lower-case letters, digits"
                " and '-', starting with a letter, at most 63 characters); derive it from the run id, e.g."
                " 'cocos-rloo-' + run_id[:8]"
            )
        if self.stage not in STAGES:
            raise ValueError(f"stage {self.stage!r}: cocos.train.launch runs one of {STAGES}")
        if self.launcher not in LAUNCHERS:
            raise ValueError(f"launcher {self.launcher!r}: one of {LAUNCHERS}")
        if self.num_nodes < 1:
            raise ValueError(f"num_nodes={self.num_nodes}: a TrainJob needs at least one node")
        if self.gpus_per_node < 0:
            raise ValueError(f"gpus_per_node={self.gpus_per_node}: 0 (CPU) or more")
        if self.launcher == "accelerate-deepspeed" and not self.deepspeed_config:
            raise ValueError("launcher 'accelerate-deepspeed' needs deepspeed_config: a path inside the image")
        if self.active_deadline_s is not None and self.active_deadline_s < 1:
            raise ValueError(f"active_deadline_s={self.active_deadline_s}: positive, or None for no deadline")
        for key in ("node_selector", "env", "labels"):
            if not isinstance(getattr(self, key), Mapping):
                raise ValueError(f"{key} must be a mapping (parse JSON pipeline parameters before building)")


@dataclass(frozen=True)
class TrainJobResult:
    name: str
    namespace: str
    duration_s: float
    pods: tuple[str, ...]


def launch_command(spec: TrainJobSpec) -> list[str]:
    """The trainer container's command. The torch runtime sets PET_NNODES, PET_NODE_RANK, PET_MASTER_ADDR and
    PET_MASTER_PORT on every node; torchrun reads them itself, and Kubernetes expands `$(PET_...)` for accelerate.
    """
    procs = max(spec.gpus_per_node, 1)
    module = ["-m", "cocos.train.launch", spec.stage, *spec.args]
    if spec.launcher == "torchrun":
        return ["torchrun", f"--nproc-per-node={procs}", *module]
    return [
        "accelerate",
        "launch",
        "--use_deepspeed",
        f"--deepspeed_config_file={spec.deepspeed_config}",
        f"--num_machines={spec.num_nodes}",
        f"--num_processes={spec.num_nodes * procs}",
        "--machine_rank=$(PET_NODE_RANK)",
        "--main_process_ip=$(PET_MASTER_ADDR)",
        "--main_process_port=$(PET_MASTER_PORT)",
        "--rdzv_backend=static",
        *module,
    ]


def _secret_env(secret: str, keys: Sequence[str]) -> list[dict[str, Any]]:
    return [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}} for key in keys]


def build_trainjob(spec: TrainJobSpec) -> dict[str, Any]:
    """The TrainJob object for `spec`, ready for CustomObjectsApi.create_namespaced_custom_object."""
    labels = {"app.kubernetes.io/part-of": "cocos", "app.kubernetes.io/component": f"train-{spec.stage}"}
    labels.update(spec.labels)
    env = _secret_env(spec.s3_secret, S3_SECRET_KEYS) + _secret_env(spec.mlflow_secret, MLFLOW_SECRET_KEYS)
    env += [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    requests: dict[str, str | int] = {"cpu": spec.cpu_per_node, "memory": spec.memory_per_node}
    limits: dict[str, str | int] = {"memory": spec.memory_per_node}
    if spec.gpus_per_node:
        # Extended resources: requests must equal limits.
        requests[spec.accelerator] = spec.gpus_per_node
        limits[spec.accelerator] = spec.gpus_per_node
    trainer: dict[str, Any] = {
        "image": spec.image,
        "command": launch_command(spec),
        "numNodes": spec.num_nodes,
        "resourcesPerNode": {"requests": requests, "limits": limits},
        "env": env,
    }
    if spec.gpus_per_node:
        trainer["numProcPerNode"] = spec.gpus_per_node
    pod_spec: dict[str, Any] = {}
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    pod_template = {"metadata": {"labels": dict(labels)}, "spec": pod_spec}
    job_patch = {"name": NODE, "template": {"spec": {"template": pod_template}}}
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainJob",
        "metadata": {"name": spec.name, "labels": labels},
        "spec": {
            "runtimeRef": {"apiGroup": GROUP, "kind": spec.runtime_kind, "name": spec.runtime},
            "trainer": trainer,
            "runtimePatches": [
                {
                    "manager": PATCH_MANAGER,
                    "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [job_patch]}}},
                }
            ],
        },
    }
    if spec.active_deadline_s is not None:
        body["spec"]["activeDeadlineSeconds"] = spec.active_deadline_s
    return body


def _condition(trainjob: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in (trainjob.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def _pod_problem(pod: Any) -> str | None:
    """Why this pod will not get the job done, or None while it may."""
    status = pod.status
    if status is None:
        return None
    if status.phase == "Failed":
        return f"pod {pod.metadata.name} failed: {status.reason or ''} {status.message or ''}".rstrip()
    for cs in (status.init_container_statuses or []) + (status.container_statuses or []):
        waiting = cs.state.waiting if cs.state else None
        if waiting is not None and waiting.reason in STUCK_REASONS:
            return f"pod {pod.metadata.name} cannot start container {cs.name}: {waiting.reason}: {waiting.message}"
        terminated = cs.state.terminated if cs.state else None
        if terminated is not None and terminated.exit_code not in (0, None) and status.phase != "Running":
            return f"pod {pod.metadata.name} container {cs.name} exited with code {terminated.exit_code}"
    return None


class _LogRelay:
    """Relays new log lines of each pod, using kubelet timestamps to skip what was already relayed."""

    def __init__(self, core: Any, namespace: str, poll_s: float) -> None:
        self.core, self.namespace, self.poll_s = core, namespace, poll_s
        self.last: dict[str, str] = {}

    def relay(self, pod_name: str) -> list[str]:
        kwargs: dict[str, Any] = {"container": NODE, "timestamps": True}
        if pod_name in self.last:
            kwargs["since_seconds"] = int(self.poll_s) + 5
        try:
            text = self.core.read_namespaced_pod_log(pod_name, self.namespace, **kwargs)
        except ApiException as exc:
            if exc.status in (400, 404):  # not started yet, or gone
                return []
            raise
        fresh = []
        for line in (text or "").splitlines():
            stamp, _, message = line.partition(" ")
            if pod_name in self.last and stamp <= self.last[pod_name]:
                continue
            self.last[pod_name] = stamp
            fresh.append(message)
            logger.info("[%s] %s", pod_name, message)
        return fresh


def _default_clients() -> tuple[Any, Any]:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi(), client.CoreV1Api()


def _delete(custom: Any, name: str, namespace: str) -> None:
    try:
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, propagation_policy="Background")
        logger.info("deleted TrainJob %s/%s", namespace, name)
    except ApiException as exc:
        logger.warning("could not delete TrainJob %s/%s: %s %s", namespace, name, exc.status, exc.reason)


def submit_and_follow(
    trainjob: Mapping[str, Any],
    namespace: str,
    timeout_s: float,
    poll_s: float = 10.0,
    *,
    custom_api: Any = None,
    core_api: Any = None,
    delete_on_error: bool = True,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> TrainJobResult:
    """Create `trainjob` in `namespace`, relay its pods' logs, return once it is Complete.

    Raises TrainJobFailed (job Failed condition, a failed pod, a pod that cannot start, or creation refused)
    and TrainJobTimeout, both naming the job; deletes the job on either unless `delete_on_error` is False.
    """
    if custom_api is None or core_api is None:
        default_custom, default_core = _default_clients()
        custom_api = custom_api or default_custom
        core_api = core_api or default_core
    name = trainjob["metadata"]["name"]
    where = f"TrainJob {namespace}/{name}"
    try:
        custom_api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, dict(trainjob))
    except ApiException as exc:
        hint = {
            404: "is the Kubeflow Trainer (its TrainJob CRD) installed?",
            409: "a TrainJob of that name exists; names must be unique per run",
            403: "the service account may not create TrainJobs (k8s/base/rbac.yaml)",
        }.get(exc.status, "")
        raise TrainJobFailed(f"{where}: creation refused: {exc.status} {exc.reason}. {hint}".rstrip()) from exc
    logger.info("created %s (timeout %.0fs)", where, timeout_s)
    start = clock()
    logs = _LogRelay(core_api, namespace, poll_s)
    seen: set[str] = set()
    try:
        while True:
            job = custom_api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            pods = core_api.list_namespaced_pod(namespace, label_selector=f"{POD_SELECTOR_LABEL}={name}").items
            for pod in pods:
                seen.add(pod.metadata.name)
                if pod.status is not None and pod.status.phase in ("Running", "Succeeded", "Failed"):
                    logs.relay(pod.metadata.name)
            for pod in pods:
                problem = _pod_problem(pod)
                if problem:
                    raise TrainJobFailed(f"{where}: {problem}")
            failed = _condition(job, "Failed")
            if failed is not None:
                raise TrainJobFailed(f"{where} failed: {failed.get('reason', '')}: {failed.get('message', '')}")
            if _condition(job, "Complete") is not None:
                duration = clock() - start
                logger.info("%s complete after %.0fs", where, duration)
                return TrainJobResult(name, namespace, duration, tuple(sorted(seen)))
            if clock() - start > timeout_s:
                raise TrainJobTimeout(f"{where} not complete after {timeout_s:.0f}s (pods: {sorted(seen) or 'none'})")
            sleep(poll_s)
    except TrainJobError:
        if delete_on_error:
            _delete(custom_api, name, namespace)
        raise
