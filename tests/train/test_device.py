"""nytorch_ext.device.resolve_device, with torch.cuda's queries monkeypatched."""
from __future__ import annotations

import pytest
import torch

from nytorch_ext.train.device import cuda_free_memory, resolve_device


@pytest.fixture
def fake_cuda(monkeypatch):
    """``fake_cuda({index: free_bytes or an exception})`` makes torch.cuda report those devices."""

    def install(free: dict, current: int = 0):
        def mem_get_info(i):
            value = free[i]
            if isinstance(value, Exception):
                raise value
            return value, 80 * 2 ** 30

        monkeypatch.setattr(torch.cuda, "is_available", lambda: bool(free))
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(free))
        monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: current)

    return install


def test_auto_is_cpu_without_cuda(fake_cuda):
    fake_cuda({})
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device() == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")
    assert cuda_free_memory() == {}


def test_auto_picks_the_gpu_with_the_most_free_memory(fake_cuda):
    fake_cuda({0: 10, 1: 30, 2: 20})
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("AUTO ") == torch.device("cuda", 1)


def test_auto_ties_go_to_the_lowest_index(fake_cuda):
    fake_cuda({0: 5, 1: 30, 2: 30})
    assert resolve_device("auto") == torch.device("cuda", 1)


def test_auto_skips_devices_whose_memory_cannot_be_read(fake_cuda):
    fake_cuda({0: RuntimeError("busy"), 1: 7})
    assert cuda_free_memory() == {0: -1, 1: 7}
    assert resolve_device("auto") == torch.device("cuda", 1)
    fake_cuda({0: RuntimeError("busy"), 1: RuntimeError("busy")})
    assert resolve_device("auto") == torch.device("cuda", 0)


def test_explicit_devices(fake_cuda):
    fake_cuda({0: 1, 1: 2}, current=1)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda") == torch.device("cuda", 1)  # the current device
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device(0) == torch.device("cuda", 0)
    assert resolve_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("meta") == torch.device("meta")


def test_cuda_requests_are_checked(fake_cuda):
    fake_cuda({0: 1, 1: 2})
    with pytest.raises(ValueError, match="2 CUDA device.*index 2"):
        resolve_device("cuda:2")
    with pytest.raises(ValueError, match="index 5"):
        resolve_device(5)
    fake_cuda({})
    for spec in ("cuda", "cuda:0", 0, torch.device("cuda")):
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device(spec)


@pytest.mark.parametrize("bad, error", [("gpu", ValueError), ("cuda:x", ValueError), (True, TypeError),
                                         (1.5, TypeError), ([0], TypeError)])
def test_bad_device_specs(bad, error):
    with pytest.raises(error, match="device"):
        resolve_device(bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.cuda
def test_auto_on_a_real_gpu():
    device = resolve_device("auto")
    assert device.type == "cuda" and torch.zeros(1, device=device).device == device
