"""Flat layouts: grouping, alignment, views and Parameter views of the buffers
(nytorch_ext/particles/layout.py)."""
import pytest
import torch

from nytorch_ext.particles.layout import ALIGN_BYTES, Layout, flatten_into
from particle_models import mixed_params, python_and_compiled


def test_layout_groups_by_dtype_and_keeps_order():
    layout = Layout.of(mixed_params())
    assert [g.dtype for g in layout.groups] == [torch.float32, torch.float64, torch.float16]
    assert layout.pids == (0, 1, 2, 3, 7, 4)


def test_offsets_are_16_byte_aligned_and_disjoint():
    params = mixed_params()
    layout = Layout.of(params)
    buffers = layout.empty()
    for slot, ptr in zip(layout.slots, layout.addresses(buffers)):
        assert ptr % ALIGN_BYTES == 0, slot
    spans = sorted((s.group, s.offset, s.offset + s.numel) for s in layout.slots if s.numel)
    for (g0, _, end0), (g1, start1, _) in zip(spans, spans[1:]):
        assert g0 != g1 or end0 <= start1


def test_views_round_trip_and_share_storage():
    params = mixed_params()
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
    assert Layout.of(mixed_params()) == Layout.of(mixed_params())
    other = mixed_params()
    other[1] = (1, torch.randn(6))
    assert Layout.of(other) != Layout.of(mixed_params())


def _parameter_impls():
    return python_and_compiled(None, "parameter_views")


@pytest.mark.parametrize("impl", _parameter_impls())
def test_layout_parameters_are_leaf_views_sharing_the_buffer_version(impl, monkeypatch):
    from nytorch_ext.particles import layout
    monkeypatch.setattr(layout, "_parameter_views", impl)
    params = mixed_params()  # three groups, an empty slot, a half group
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
