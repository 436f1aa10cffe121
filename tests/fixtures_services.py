"""Pytest fixtures that start real local services (SeaweedFS S3 + MLflow) for the whole session.

`live_services` starts them once, on free ports in a temporary state folder, puts the client
environment (MLFLOW_TRACKING_URI, AWS_*, COCOS_BUCKET) into os.environ for the session, and stops them
at the end (or, through a watchdog, when the pytest process dies). `s3_prefix` gives each test its
own `s3://<bucket>/tests/<uuid>` prefix.

Register with `pytest_plugins = ["tests.fixtures_services"]` in tests/conftest.py
(or `pytest -p tests.fixtures_services`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from cocos import services


@pytest.fixture(scope="session")
def live_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.ServiceInfo]:
    """Running SeaweedFS + MLflow with the client environment set; stopped at session end."""
    state = tmp_path_factory.mktemp("cocos-services")
    info = services.up(state, services.free_ports(), owner_pid=os.getpid())
    env = info.env()
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield info
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        services.down(state)


@pytest.fixture
def s3_prefix(live_services: services.ServiceInfo) -> str:
    """A fresh, empty S3 prefix in the services' bucket, unique to the test."""
    return f"s3://{live_services.bucket}/tests/{uuid.uuid4().hex[:12]}"
