"""cocos/trainjob.py: the TrainJob objects it builds and the submit-and-follow loop, without a cluster.

Covers: generated TrainJobs (torchrun and accelerate+DeepSpeed, several nodes x GPUs, node selector and
tolerations) validate against the upstream CRD schema subset in k8s/crds/ with unknown fields rejected, and
the CRD's CEL name rules; a misspelt field fails (the check is not vacuous); the env reads the same secret
keys as the pipeline; the spec refuses bad names, stages and launcher settings; submit_and_follow, against
fake CustomObjectsApi/CoreV1Api objects and a fake clock: returns on Complete and relays each log line once,
fails fast on a failed pod, on a pod that cannot start and on the Failed condition, times out, explains a
refused creation, and deletes the TrainJob on every error.
Run: pytest tests/k8s/test_trainjob.py -q
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes.client import (
    V1ContainerState,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodList,
    V1PodStatus,
)
from kubernetes.client.rest import ApiException

from cocos.trainjob import (
    MLFLOW_SECRET_KEYS,
    POD_SELECTOR_LABEL,
    S3_SECRET_KEYS,
    TrainJobFailed,
    TrainJobSpec,
    TrainJobTimeout,
    build_trainjob,
    launch_command,
    submit_and_follow,
)
from components import images
from pipelines import cocos_pipeline

CRD = Path(__file__).resolve().parents[2] / "k8s/crds/trainjobs.trainer.kubeflow.org.yaml"
NS = "cocos"


def _closed(schema: Any) -> Any:
    """The schema with unknown fields rejected wherever it lists properties, as a typo would be pruned silently."""
    if isinstance(schema, dict):
        schema = {k: _closed(v) for k, v in schema.items()}
        if schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_closed(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def crd_version() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    assert crd["spec"]["names"]["kind"] == "TrainJob"
    return next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")


def validate(obj: dict[str, Any], version: dict[str, Any]) -> None:
    schema = version["schema"]["openAPIV3Schema"]
    jsonschema.Draft202012Validator(_closed(schema)).validate(obj)
    for rule in schema["x-kubernetes-validations"]:
        pattern = re.search(r"matches\('(.+)'\)", rule["rule"])
        limit = re.search(r"size\(self\.metadata\.name\) <= (\d+)", rule["rule"])
        assert pattern or limit, f"a CEL rule this test does not evaluate: {rule['rule']}"
        if pattern:
            assert re.match(pattern.group(1), obj["metadata"]["name"]), rule["message"]
        if limit:
            assert len(obj["metadata"]["name"]) <= int(limit.group(1)), rule["message"]


def spec(**overrides: Any) -> TrainJobSpec:
    values: dict[str, Any] = {
        "name": "cocos-rloo-1a2b3c4d",
        "stage": "rloo",
        "image": images.TRAIN,
        "args": ("--config", "/cfg/rloo.json"),
        "num_nodes": 2,
        "gpus_per_node": 4,
        "node_selector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
        "tolerations": ({"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"},),
    }
    values.update(overrides)
    return TrainJobSpec(**values)


# --- the object ---------------------------------------------------------------------------------------


def test_torchrun_trainjob_validates_against_the_crd(crd_version: dict[str, Any]) -> None:
    job = build_trainjob(spec())
    validate(job, crd_version)
    trainer = job["spec"]["trainer"]
    assert job["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and job["kind"] == "TrainJob"
    assert job["spec"]["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 4
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == 4
    assert trainer["resourcesPerNode"]["requests"]["nvidia.com/gpu"] == 4
    assert trainer["command"][:2] == ["torchrun", "--nproc-per-node=4"]
    assert trainer["command"][2:] == ["-m", "cocos.train.launch", "rloo", "--config", "/cfg/rloo.json"]
    pod = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    assert pod["name"] == "node"
    pod_spec = pod["template"]["spec"]["template"]["spec"]
    assert pod_spec["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod_spec["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_deepspeed_trainjob_validates_against_the_crd(crd_version: dict[str, Any]) -> None:
    job = build_trainjob(
        spec(stage="sft", launcher="accelerate-deepspeed", deepspeed_config="/app/ds/zero2.json", num_nodes=3)
    )
    validate(job, crd_version)
    command = job["spec"]["trainer"]["command"]
    assert command[:3] == ["accelerate", "launch", "--use_deepspeed"]
    assert "--num_machines=3" in command and "--num_processes=12" in command
    assert "--machine_rank=$(PET_NODE_RANK)" in command
    assert command[command.index("-m") :] == ["-m", "cocos.train.launch", "sft", "--config", "/cfg/rloo.json"]


def test_cpu_single_node_trainjob_has_no_gpu_request(crd_version: dict[str, Any]) -> None:
    job = build_trainjob(spec(num_nodes=1, gpus_per_node=0, node_selector={}, tolerations=(), active_deadline_s=600))
    validate(job, crd_version)
    assert "nvidia.com/gpu" not in job["spec"]["trainer"]["resourcesPerNode"]["limits"]
    assert "numProcPerNode" not in job["spec"]["trainer"]
    assert job["spec"]["activeDeadlineSeconds"] == 600


def test_schema_check_rejects_a_misspelt_field(crd_version: dict[str, Any]) -> None:
    job = build_trainjob(spec())
    bad = copy.deepcopy(job)
    bad["spec"]["trainer"]["numNode"] = bad["spec"]["trainer"].pop("numNodes")
    with pytest.raises(jsonschema.ValidationError):
        validate(bad, crd_version)
    bad = copy.deepcopy(job)
    bad["spec"]["trainer"]["resourcesPerNode"]["limits"]["memory"] = "lots"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad, crd_version)


def test_env_reads_the_pipeline_secrets_by_name() -> None:
    job = build_trainjob(spec(s3_secret="team-s3", env={"NCCL_DEBUG": "WARN"}))
    env = {e["name"]: e for e in job["spec"]["trainer"]["env"]}
    assert set(S3_SECRET_KEYS) == set(cocos_pipeline.S3_SECRET_KEYS)
    assert set(MLFLOW_SECRET_KEYS) == set(cocos_pipeline.MLFLOW_SECRET_KEYS)
    for key in S3_SECRET_KEYS:
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "team-s3", "key": key}
    assert env["MLFLOW_TRACKING_URI"]["valueFrom"]["secretKeyRef"]["name"] == "cocos-mlflow"
    assert env["NCCL_DEBUG"] == {"name": "NCCL_DEBUG", "value": "WARN"}
    assert not any("value" in e and e["name"] in S3_SECRET_KEYS for e in env.values()), "no credential inline"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "Cocos_RLOO"}, "RFC 1035"),
        ({"name": "c" * 64}, "RFC 1035"),
        ({"stage": "dpo"}, "stage"),
        ({"launcher": "mpirun"}, "launcher"),
        ({"launcher": "accelerate-deepspeed"}, "deepspeed_config"),
        ({"num_nodes": 0}, "num_nodes"),
        ({"node_selector": '{"a": "b"}'}, "mapping"),
    ],
)
def test_spec_refuses_what_the_trainer_would(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec(**overrides)


def test_launch_command_single_gpu_default() -> None:
    assert launch_command(spec(gpus_per_node=0, args=()))[:2] == ["torchrun", "--nproc-per-node=1"]


# --- submit and follow ----------------------------------------------------------------------------------


def pod(name: str, phase: str, waiting: str | None = None) -> V1Pod:
    statuses = None
    if waiting:
        state = V1ContainerState(waiting=V1ContainerStateWaiting(reason=waiting, message='secret "cocos-s3" not found'))
        statuses = [V1ContainerStatus(name="node", state=state, image="x", image_id="", ready=False, restart_count=0)]
    return V1Pod(metadata=V1ObjectMeta(name=name), status=V1PodStatus(phase=phase, container_statuses=statuses))


def condition(kind: str, reason: str = "Done", message: str = "") -> dict[str, Any]:
    return {"status": {"conditions": [{"type": kind, "status": "True", "reason": reason, "message": message}]}}


class FakeCustom:
    """CustomObjectsApi: create stores; each get returns the next scripted TrainJob status (the last repeats)."""

    def __init__(self, statuses: list[dict[str, Any]], create_error: ApiException | None = None) -> None:
        self.statuses, self.create_error = statuses, create_error
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.gets = 0

    def create_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str, body: dict) -> dict:
        assert (group, version, plural, ns) == ("trainer.kubeflow.org", "v1alpha1", "trainjobs", NS)
        if self.create_error:
            raise self.create_error
        self.created.append(body)
        return body

    def get_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str, name: str) -> dict:
        assert name == self.created[0]["metadata"]["name"]
        status = self.statuses[min(self.gets, len(self.statuses) - 1)]
        self.gets += 1
        return {**self.created[0], **status}

    def delete_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str, name: str, **_: Any):
        self.deleted.append(name)


class FakeCore:
    """CoreV1Api: each list returns the next scripted pods; logs grow by one line per read, overlapping."""

    def __init__(self, pods: list[list[V1Pod]]) -> None:
        self.pods = pods
        self.lists = 0
        self.reads: dict[str, int] = {}
        self.selectors: list[str] = []

    def list_namespaced_pod(self, ns: str, label_selector: str) -> V1PodList:
        self.selectors.append(label_selector)
        items = self.pods[min(self.lists, len(self.pods) - 1)]
        self.lists += 1
        return V1PodList(items=items)

    def read_namespaced_pod_log(self, name: str, ns: str, **kwargs: Any) -> str:
        assert kwargs["container"] == "node" and kwargs["timestamps"] is True
        n = self.reads[name] = self.reads.get(name, 0) + 1
        # Every read returns all lines so far: the relay must skip what it already logged.
        return "".join(f"2026-01-01T00:00:{i:02d}.000000000Z {name} step {i}\n" for i in range(1, n + 1))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def follow(custom: FakeCustom, core: FakeCore, timeout_s: float = 3600) -> Any:
    clock = FakeClock()
    job = build_trainjob(spec())
    return submit_and_follow(
        job, NS, timeout_s, poll_s=10, custom_api=custom, core_api=core, clock=clock, sleep=clock.sleep
    )


def test_returns_on_complete_and_relays_each_log_line_once(caplog: pytest.LogCaptureFixture) -> None:
    running = [pod("cocos-rloo-1a2b3c4d-node-0-0", "Running"), pod("cocos-rloo-1a2b3c4d-node-0-1", "Running")]
    custom = FakeCustom([{}, {}, condition("Complete")])
    core = FakeCore([[], running, running])
    with caplog.at_level(logging.INFO, logger="cocos.trainjob"):
        result = follow(custom, core)
    assert result.name == "cocos-rloo-1a2b3c4d" and result.namespace == NS
    assert result.pods == tuple(sorted(p.metadata.name for p in running))
    assert result.duration_s == 20
    assert custom.deleted == []
    assert set(core.selectors) == {f"{POD_SELECTOR_LABEL}=cocos-rloo-1a2b3c4d"}
    lines = [r.getMessage() for r in caplog.records if "step" in r.getMessage()]
    assert lines == sorted(set(lines), key=lines.index), "no line relayed twice"
    assert sum("node-0-0 step" in line for line in lines) == 2  # two reads, two distinct lines


def test_fails_fast_on_a_failed_pod() -> None:
    pods = [pod("cocos-rloo-1a2b3c4d-node-0-0", "Running"), pod("cocos-rloo-1a2b3c4d-node-0-1", "Failed")]
    custom = FakeCustom([{}])  # the TrainJob itself never reports Failed
    core = FakeCore([[], pods])
    with pytest.raises(TrainJobFailed, match=r"TrainJob cocos/cocos-rloo-1a2b3c4d: pod cocos-rloo-1a2b3c4d-node-0-1"):
        follow(custom, core)
    assert custom.gets == 2, "stops at the first poll that sees the failure"
    assert custom.deleted == ["cocos-rloo-1a2b3c4d"]


def test_fails_fast_on_a_pod_that_cannot_start() -> None:
    custom = FakeCustom([{}])
    core = FakeCore([[pod("cocos-rloo-1a2b3c4d-node-0-0", "Pending", waiting="CreateContainerConfigError")]])
    with pytest.raises(TrainJobFailed, match=r'CreateContainerConfigError: secret "cocos-s3" not found'):
        follow(custom, core)
    assert custom.gets == 1 and custom.deleted == ["cocos-rloo-1a2b3c4d"]


def test_fails_on_the_failed_condition() -> None:
    custom = FakeCustom([{}, condition("Failed", "DeadlineExceeded", "active deadline reached")])
    core = FakeCore([[]])
    with pytest.raises(TrainJobFailed, match="cocos-rloo-1a2b3c4d failed: DeadlineExceeded: active deadline"):
        follow(custom, core)
    assert custom.deleted == ["cocos-rloo-1a2b3c4d"]


def test_times_out_naming_the_job() -> None:
    custom = FakeCustom([{}])
    core = FakeCore([[pod("cocos-rloo-1a2b3c4d-node-0-0", "Pending")]])
    with pytest.raises(TrainJobTimeout, match=r"TrainJob cocos/cocos-rloo-1a2b3c4d not complete after 60s"):
        follow(custom, core, timeout_s=60)
    assert custom.gets == 8  # polls at t = 0, 10, ..., 70
    assert custom.deleted == ["cocos-rloo-1a2b3c4d"]


def test_explains_a_refused_creation() -> None:
    custom = FakeCustom([{}], create_error=ApiException(status=404, reason="Not Found"))
    with pytest.raises(TrainJobFailed, match="creation refused: 404 Not Found. is the Kubeflow Trainer"):
        follow(custom, FakeCore([[]]))
    assert custom.gets == 0
