"""Flat layout, storage views and the buffer pool (nytorch_ext/flat.py)."""
import pytest
import torch

from nytorch_ext.particles.flat import ALIGN_BYTES, BufferPool, Layout, flatten_into


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
    assert pool.free_bytes() == 0  # all in use: tracked, no memory of the pool's own
    del held
    assert pool.free_bytes() == 2 * 8 * 4  # the 5 now unused buffers, down to 2
    a, b = pool.take(8, torch.float32, torch.device("cpu")), pool.take(8, torch.float32, torch.device("cpu"))
    assert a.data_ptr() != b.data_ptr()
    assert pool.free_bytes() == 0


def test_pool_lends_tracked_buffers_and_keeps_at_most_max_free_unused():
    pool = BufferPool(max_free=1)
    cpu = torch.device("cpu")
    first = pool.lend(16, torch.float32, cpu)
    address = first.data_ptr()
    second = pool.lend(16, torch.float32, cpu)  # first is held: a fresh one
    assert second.data_ptr() != address
    del first
    again = pool.lend(16, torch.float32, cpu)  # the unused one, recycled: a new tensor on it
    assert again.data_ptr() == address
    del second, again
    held = [pool.lend(16, torch.float32, cpu) for _ in range(5)]  # one or two reused, the rest fresh
    assert len({t.data_ptr() for t in held}) == 5
    del held  # five unused now: max_free of them are kept
    assert pool.free_bytes() == pool.max_free * 16 * 4
    kept = pool.lend(16, torch.float32, cpu)
    assert pool.free_bytes() == 0 and kept.numel() == 16


def test_replacing_live_particles_one_by_one_reuses_their_buffers(monkeypatch):
    """The seed's APSO loop: K particles alive, each replaced by a new one in turn.
    Every new particle's buffer is the one its predecessor freed (no page faults)."""
    import random
    from torch import nn
    import nytorch_ext as nyto
    from nytorch_ext.particles import flat

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


# ------------------------------------------------- placement checks (C and Python)

def _placement_impls():
    from nytorch_ext.particles import flat
    from nytorch_ext.ops._extension import _C
    impls = [pytest.param((flat._python_views_in_place, flat._python_entries_are), id="python")]
    compiled = pytest.mark.skipif(_C is None, reason="the compiled extension is not loaded")
    impls.append(pytest.param((getattr(_C, "views_in_place", None), getattr(_C, "entries_are", None)),
                              id="compiled", marks=compiled))
    return impls


def _placed_views():
    layout = Layout.of(_params())
    buffers = layout.empty()
    flatten_into(layout, [t for _, t in _params()], buffers)
    params = [torch.nn.Parameter(v, requires_grad=False) for v in layout.views(buffers)]
    return layout, buffers, params


@pytest.mark.parametrize("impls", _placement_impls())
def test_views_in_place_sees_every_way_a_view_is_lost(impls):
    views_in_place, _ = impls
    layout, buffers, params = _placed_views()
    addresses = layout.addresses(buffers)
    assert views_in_place(params, addresses, layout.sizes) is True
    assert views_in_place([], [], []) is True
    replaced = [p.detach() for p in params]
    replaced[0] = torch.nn.Parameter(params[0].detach().clone())  # new storage
    assert views_in_place(replaced, addresses, layout.sizes) is False
    moved = list(params)
    moved[1] = torch.nn.Parameter(buffers[0][1:6])  # same shape, another address
    assert views_in_place(moved, addresses, layout.sizes) is False
    transposed = list(params)
    transposed[0] = params[0].detach().t()  # same address and numel, other shape/strides
    assert views_in_place(transposed, addresses, layout.sizes) is False
    square = list(params)
    square[5] = params[5].detach().t()  # same address and shape (2x2), not contiguous
    assert views_in_place(square, addresses, layout.sizes) is False
    reshaped = list(params)
    reshaped[0] = params[0].detach().view(9)  # same address, other shape
    assert views_in_place(reshaped, addresses, layout.sizes) is False


@pytest.mark.parametrize("impls", _placement_impls())
def test_entries_are_checks_identity_and_missing_names(impls):
    _, entries_are = impls
    a, b = torch.zeros(1), torch.zeros(1)
    table = {"w": a, "b": None}
    assert entries_are([table, table], ["w", "b"], [a, None]) is True
    assert entries_are([table], ["w"], [b]) is False  # equal values, another object
    assert entries_are([table], ["gone"], [a]) is False
    assert entries_are([table], ["gone"], [None]) is True  # as dict.get: a missing name is None
    assert entries_are([], [], []) is True


def test_compiled_placement_checks_reject_bad_arguments():
    from nytorch_ext.ops._extension import _C
    if _C is None:
        pytest.skip("the compiled extension is not loaded")
    layout, buffers, params = _placed_views()
    with pytest.raises(TypeError, match="three lists"):
        _C.views_in_place(tuple(params), layout.addresses(buffers), layout.sizes)
    with pytest.raises(ValueError, match="6 params but 5 addresses"):
        _C.views_in_place(params, layout.addresses(buffers)[:5], layout.sizes)
    with pytest.raises(TypeError, match=r"params\[0\] is not a tensor"):
        _C.views_in_place([1.0] + params[1:], layout.addresses(buffers), layout.sizes)
    with pytest.raises(TypeError):  # a shape entry that is not an int: the error, not a wrong answer
        _C.views_in_place(params[:1], layout.addresses(buffers)[:1], [("3", 3)])
    with pytest.raises(TypeError):
        _C.views_in_place(params[:1], ["x"], layout.sizes[:1])
    with pytest.raises(TypeError, match=r"dicts\[0\] is not a dict"):
        _C.entries_are([[1]], ["w"], [None])
    with pytest.raises(ValueError, match="1 dicts but 2 names"):
        _C.entries_are([{}], ["a", "b"], [None])
    with pytest.raises(TypeError, match="three lists"):
        _C.entries_are([{}], ("a",), [None])


def _parameter_impls():
    from nytorch_ext.particles import flat
    from nytorch_ext.ops._extension import _C
    compiled = pytest.mark.skipif(_C is None, reason="the compiled extension is not loaded")
    return [pytest.param(None, id="python"), pytest.param(getattr(_C, "parameter_views", None), id="compiled",
                                                         marks=compiled)]


@pytest.mark.parametrize("impl", _parameter_impls())
def test_layout_parameters_are_leaf_views_sharing_the_buffer_version(impl, monkeypatch):
    from nytorch_ext.particles import flat
    monkeypatch.setattr(flat, "_parameter_views", impl)
    params = _params()  # three groups, an empty slot, a half group
    layout = Layout.of(params)
    buffers = layout.empty()
    flatten_into(layout, [t for _, t in params], buffers)
    flags = [True, False, True, True, False, False]
    made = layout.parameters(buffers, flags)
    assert [type(p) for p in made] == [torch.nn.Parameter] * len(params)
    addresses = layout.addresses(buffers)
    for p, (_, t), rg, address, slot in zip(made, params, flags, addresses, layout.slots):
        assert torch.equal(p.detach(), t) and p.dtype == t.dtype and p.shape == t.shape
        assert p.requires_grad == rg and p.is_leaf and p.grad_fn is None and not p._is_view()
        assert p.is_contiguous() and (p.numel() == 0 or p.data_ptr() == address)
        assert p.untyped_storage().data_ptr() == buffers[slot.group].untyped_storage().data_ptr()
    before = made[0]._version
    buffers[0].add_(1)  # a write through the buffer bumps the parameter's version
    assert made[0]._version == before + 1
    assert torch.equal(made[0].detach(), params[0][1] + 1)
    with torch.no_grad():
        made[1].mul_(0)  # and a write through the parameter reaches the buffer
    assert torch.equal(buffers[0][layout.slots[1].offset:][:5], torch.zeros(5))
    made[0].data = torch.ones(2)  # metadata may change, as on any Parameter
    assert made[0].shape == (2,)
    loss = (made[2] * 2).sum()  # a leaf that requires grad takes gradients
    loss.backward()
    assert torch.equal(made[2].grad, torch.full_like(made[2], 2.0))


def test_compiled_parameter_views_reject_bad_arguments():
    from nytorch_ext.ops._extension import _C
    if _C is None:
        pytest.skip("the compiled extension is not loaded")
    flat = torch.zeros(8)
    with pytest.raises(TypeError, match="a tensor and four lists"):
        _C.parameter_views([flat], [0], [2], [1], [True])
    with pytest.raises(TypeError, match="offsets must be a list of ints"):
        _C.parameter_views(flat, (0,), [2], [1], [True])
    with pytest.raises(ValueError, match="one length"):
        _C.parameter_views(flat, [0, 2], [2, 2], [1, 1], [True])
    with pytest.raises(ValueError, match="outside flat"):
        _C.parameter_views(flat, [4], [5], [1], [True])
    with pytest.raises(ValueError, match="shapes is shorter"):
        _C.parameter_views(flat, [0], [2], [2], [True])
    with pytest.raises(ValueError, match="shapes is longer"):
        _C.parameter_views(flat, [0], [2, 2], [1], [True])
    with pytest.raises(ValueError, match="contiguous 1-D"):
        _C.parameter_views(torch.zeros(2, 4), [0], [2], [1], [True])
    with pytest.raises(ValueError, match="contiguous 1-D"):
        _C.parameter_views(torch.zeros(8, requires_grad=True), [0], [2], [1], [True])
    with pytest.raises(RuntimeError, match="floating point"):
        _C.parameter_views(torch.zeros(8, dtype=torch.int64), [0], [2], [1], [True])
    assert _C.parameter_views(flat, [], [], [], []) == []
