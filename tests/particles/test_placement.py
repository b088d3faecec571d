"""Placement checks, compiled and Python: are a particle's parameters still views
of its buffers, still in their modules' tables (nytorch_ext/particles/placement.py)."""
import pytest
import torch

from nytorch_ext.particles.layout import Layout, flatten_into
from particle_models import mixed_params, python_and_compiled


def _placement_impls():
    from nytorch_ext.particles import placement
    return python_and_compiled((placement._python_views_in_place, placement._python_entries_are,
                                placement._python_attributes_are),
                               ("views_in_place", "entries_are", "attributes_are"))


def _placed_views():
    layout = Layout.of(mixed_params())
    buffers = layout.empty()
    flatten_into(layout, [t for _, t in mixed_params()], buffers)
    params = [torch.nn.Parameter(v, requires_grad=False) for v in layout.views(buffers)]
    return layout, buffers, params


@pytest.mark.parametrize("impls", _placement_impls())
def test_views_in_place_sees_every_way_a_view_is_lost(impls):
    views_in_place = impls[0]
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
    entries_are = impls[1]
    a, b = torch.zeros(1), torch.zeros(1)
    table = {"w": a, "b": None}
    assert entries_are([table, table], ["w", "b"], [a, None]) is True
    assert entries_are([table], ["w"], [b]) is False  # equal values, another object
    assert entries_are([table], ["gone"], [a]) is False
    assert entries_are([table], ["gone"], [None]) is True  # as dict.get: a missing name is None
    assert entries_are([], [], []) is True


class _Holder:
    def __init__(self, storage):
        self.storage = storage


@pytest.mark.parametrize("impls", _placement_impls())
def test_attributes_are_checks_identity_and_raises_for_a_missing_attribute(impls):
    attributes_are = impls[2]
    a, b = torch.zeros(1), torch.zeros(1)
    holders = [_Holder(a), _Holder(b)]
    assert attributes_are(holders, "storage", [a, b]) is True
    assert attributes_are(holders, "storage", [a, a]) is False  # another object
    assert attributes_are(holders, "storage", [b, b]) is False  # the first one decides
    assert attributes_are([_Holder(b.clone())], "storage", [b]) is False  # equal values, another object
    assert attributes_are([], "storage", []) is True
    holders[1].storage = a
    assert attributes_are(holders, "storage", [a, b]) is False  # a replaced attribute is seen
    with pytest.raises(AttributeError):
        attributes_are([object()], "storage", [None])  # as getattr, not a silent False


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
    with pytest.raises(TypeError, match="a list, a str and a list"):
        _C.attributes_are((_Holder(1),), "storage", [1])
    with pytest.raises(TypeError, match="a list, a str and a list"):
        _C.attributes_are([_Holder(1)], 3, [1])
    with pytest.raises(ValueError, match="2 objects but 1 values"):
        _C.attributes_are([_Holder(1), _Holder(2)], "storage", [1])
    with pytest.raises(ValueError, match="1 dicts but 2 names"):
        _C.entries_are([{}], ["a", "b"], [None])
    with pytest.raises(TypeError, match="three lists"):
        _C.entries_are([{}], ("a",), [None])
