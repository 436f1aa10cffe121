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
