"""Sandbox tests run under both isolation modes where they request the `isolation` fixture."""

from __future__ import annotations

import pytest

from cocos.sandbox.executor import ISOLATION_ENV, ISOLATIONS


@pytest.fixture(params=ISOLATIONS)
def isolation(request, monkeypatch):
    """Each isolation mode in turn, as the default of every `execute` call in the test."""
    monkeypatch.setenv(ISOLATION_ENV, request.param)
    return request.param
