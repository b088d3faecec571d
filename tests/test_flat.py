"""Flat layout, storage views and the buffer pool (nytorch_ext/flat.py)."""
import pytest
import torch

from nytorch_ext.flat import ALIGN_BYTES, BufferPool, Layout, flatten_into


def _params():
    g = torch.Generator().manual_seed(0)
    return [(0, torch.randn(3, 3, generator=g)), (1, torch.randn(5, generator=g)),
            (2, torch.randn(2, generator=g).double()), (3, torch.randn(1, generator=g)),
            (7, torch.randn(0, generator=g)), (4, torch.randn(2, 2, generator=g).half())]


def test_layout_groups_by_dtype_and_keeps_order():
    layout = Layout.of(_params())
    assert [g.dtype for g in layout.groups] == [torch.float32, torch.float64, torch.float16]
    assert layout.pids == (0, 1, 2, 3, 7, 4)


def test_offsets_are_16_byte_aligned_and_disjoint():
    params = _params()
    layout = Layout.of(params)
    buffers = layout.empty()
    for slot, ptr in zip(layout.slots, layout.addresses(buffers)):
        assert ptr % ALIGN_BYTES == 0, slot
    spans = sorted((s.group, s.offset, s.offset + s.numel) for s in layout.slots if s.numel)
    for (g0, _, end0), (g1, start1, _) in zip(spans, spans[1:]):
        assert g0 != g1 or end0 <= start1


def test_views_round_trip_and_share_storage():
    params = _params()
    layout = Layout.of(params)
    buffers = layout.empty()
    flatten_into(layout, [t for _, t in params], buffers)
    views = layout.views(buffers)
    for view, (_, t) in zip(views, params):
        assert torch.equal(view, t)
    views[0].fill_(7.0)
    assert torch.all(buffers[0][: 9] == 7.0)
    assert [v.data_ptr() for v in views] == layout.addresses(buffers)


def test_equal_layouts_compare_equal():
    assert Layout.of(_params()) == Layout.of(_params())
    other = _params()
    other[1] = (1, torch.randn(6))
    assert Layout.of(other) != Layout.of(_params())


def test_pool_reuses_only_unreferenced_buffers():
    pool = BufferPool()
    buf = torch.empty(100)
    view = buf[3:10]
    address = buf.data_ptr()
    pool.give([buf])
    del buf  # only the pool holds the tensor now, but the view still uses its storage
    cpu = torch.device("cpu")
    assert pool.take(100, torch.float32, cpu).data_ptr() != address
    del view
    again = pool.take(100, torch.float32, cpu)
    assert again.data_ptr() == address
    assert pool.take(100, torch.float32, cpu).data_ptr() != address  # handed out once


@pytest.mark.parametrize("size", [1, 4096])
def test_pool_does_not_hand_out_a_buffer_still_held(size):
    pool = BufferPool()
    held = torch.zeros(size)
    pool.give([held])
    fresh = pool.take(size, torch.float32, torch.device("cpu"))
    assert fresh is not held


def test_pool_keeps_at_most_max_free_unused_buffers():
    pool = BufferPool(max_free=2)
    held = [torch.empty(8) for _ in range(5)]
    pool.give(held)
    key = (8, torch.float32, torch.device("cpu"))
    assert len(pool._tracked[key]) == 5  # all in use: tracked, no memory of the pool's own
    del held
    pool.give([torch.empty(8)])  # trims: the 5 now unused buffers, down to 2
    assert len(pool._tracked[key]) <= 3
    a, b = pool.take(8, torch.float32, torch.device("cpu")), pool.take(8, torch.float32, torch.device("cpu"))
    assert a.data_ptr() != b.data_ptr()


def test_replacing_live_particles_one_by_one_reuses_their_buffers(monkeypatch):
    """The seed's APSO loop: K particles alive, each replaced by a new one in turn.
    Every new particle's buffer is the one its predecessor freed (no page faults)."""
    import random
    from torch import nn
    import nytorch_ext as nyto
    from nytorch_ext import flat

    class Net(nyto.NytoModule):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(33, 17)

    first = nyto.ParticleModule(Net())
    pool = [first] + [first.randn() for _ in range(11)]  # more than max_free live particles
    rng = random.Random(0)

    def apso_round():
        best, *others = rng.sample(range(12), 6)
        for i in others:
            pool[i] = (0.5 * pool[best].product() + 0.5 * pool[i].product()).module()

    apso_round()
    fresh = []
    real = flat._fresh
    monkeypatch.setattr(flat, "_fresh", lambda *a: fresh.append(a) or real(*a))
    for _ in range(5):
        apso_round()
    assert fresh == []
