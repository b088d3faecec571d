"""Fixtures shared by the nytorch_ext tests.

``backend`` runs a test once on the compiled kernels (``nytorch_ext._C``, via the
registered ``torch.ops.nytorch_ext`` ops) and once on the pure-PyTorch fallback
(``nytorch_ext.ops.fallback``), by swapping every op of the registry
(``nytorch_ext.ops.registry.OPS``) that the public functions in
``nytorch_ext.ops`` call (``ops._impl``).
"""
from __future__ import annotations

import pytest
import torch

from nytorch_ext import ops
from reference import BACKENDS, use_backend


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch) -> str:
    use_backend(request.param, monkeypatch)
    return request.param


@pytest.fixture
def xfail_compiled(request, backend):
    """``xfail_compiled(reason)`` marks the running test as a strict expected
    failure when it runs on the compiled backend (a known library bug there)."""

    def mark(reason: str) -> None:
        if backend == "compiled":
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason))

    return mark


def pytest_report_header(config):
    info = ops.backend_info()
    return [f"nytorch_ext backend_info: {info}",
            f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}"]
