"""The container images of every component, pinned in one place (see images/ for their Dockerfiles).

Release builds replace the tags with digests (`@sha256:...`) through `COCOS_IMAGE_*` at compile time.
"""

import os

REGISTRY = os.environ.get("COCOS_IMAGE_REGISTRY", "ghcr.io/cocos-pipeline")
VERSION = os.environ.get("COCOS_IMAGE_VERSION", "0.1.0")

# "python" in the name keeps kfp's local SubprocessRunner from warning about a non-Python image.
BASE = os.environ.get("COCOS_IMAGE_BASE", f"{REGISTRY}/cocos-python-base:{VERSION}")
TRAIN = os.environ.get("COCOS_IMAGE_TRAIN", f"{REGISTRY}/cocos-python-train-cuda:{VERSION}")
SANDBOX = os.environ.get("COCOS_IMAGE_SANDBOX", f"{REGISTRY}/cocos-python-sandbox:{VERSION}")

# Which Dockerfile builds each image (from the repository root); images/README.md carries the same table and
# tests/images checks that the two agree.
DOCKERFILES = {
    "BASE": "images/base/Dockerfile",  # prepare_data, register_model; the MLflow server in k8s/
    "TRAIN": "images/train/Dockerfile",  # boost_sft, cocos_rloo, evaluate; Kubeflow Trainer TrainJob nodes
    "SANDBOX": "images/sandbox/Dockerfile",  # the sandbox service (k8s/sandbox)
}
