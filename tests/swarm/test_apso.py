"""The APSO step's parts (nytorch_ext/swarm/apso.py): the plan's weights and the result."""
import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from nytorch_ext.swarm import apso, choose_subset
from nytorch_ext.swarm.apso import ApsoResult, blend_plan


def counted_plan(indices, losses, alpha):
    """The plan written out as the seed does it: the best, then m draws -> 1 - (1 - alpha)^m."""
    best = min(indices, key=lambda i: losses[i])
    counts = {}
    for i in indices:
        if i != best:
            counts[i] = counts.get(i, 0) + 1
    return best, {i: 1.0 - (1.0 - alpha) ** m for i, m in counts.items()}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 11), min_size=1, max_size=12),
       st.lists(st.floats(-1e6, 1e6), min_size=12, max_size=12),
       st.floats(1e-6, 1 - 1e-6))
def test_blend_plan_is_the_counted_plan_bit_for_bit(indices, losses, alpha):
    # draws without repeats take a shortcut: their weights must be the same floats
    best, weights = blend_plan(indices, losses, alpha)
    want_best, want = counted_plan(indices, losses, alpha)
    assert best == want_best
    assert list(weights.items()) == list(want.items())  # same members, same order, same bits


def test_blend_plan_ties_go_to_the_first_drawn():
    assert blend_plan([3, 1, 2], [0.0, 1.0, 1.0, 1.0], 0.3)[0] == 3
    assert blend_plan([2, 3], [0.0, 5.0, 1.0, 1.0], 0.3) == (2, {3: 1.0 - (1.0 - 0.3)})


def test_apso_result_of_is_the_dataclass():
    result = ApsoResult._of([1, 2, 1], 2, {1: 0.5})
    assert result == ApsoResult([1, 2, 1], 2, {1: 0.5})
    assert repr(result) == repr(ApsoResult([1, 2, 1], 2, {1: 0.5}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.best = 1
    assert not math.isnan(result.blended[1])


# ------------------------------------------------------------------ the draw

def compiled_draw():
    from nytorch_ext.ops._extension import _C
    if _C is None:
        pytest.skip("the compiled extension is not loaded")
    return _C.draw_indices


DRAWS = [pytest.param(lambda: apso.torch_draw, id="torch"), pytest.param(compiled_draw, id="compiled")]


@pytest.mark.parametrize("make_draw", DRAWS)
@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2 ** 63 - 1), st.integers(1, 70), st.integers(0, 80), st.booleans())
def test_the_draw_is_torchs_and_leaves_the_generator_where_torch_does(make_draw, seed, size, k, replace):
    draw = make_draw()
    k = k if replace else min(k, size)
    ours, theirs = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    if replace:
        expected = torch.randint(size, (k,), generator=theirs).tolist()
    else:
        expected = torch.randperm(size, generator=theirs).tolist()[:k]
    assert draw(size, k, replace, ours) == expected
    assert torch.equal(torch.rand(3, generator=ours), torch.rand(3, generator=theirs))


@pytest.mark.parametrize("make_draw", DRAWS)
def test_the_draw_from_the_default_generator(make_draw):
    draw = make_draw()
    torch.manual_seed(11)
    ours = draw(12, 6, False, None), draw(12, 6, True, None), torch.rand(2)
    torch.manual_seed(11)
    theirs = torch.randperm(12).tolist()[:6], torch.randint(12, (6,)).tolist(), torch.rand(2)
    assert ours[:2] == theirs[:2] and torch.equal(ours[2], theirs[2])


def test_the_compiled_draw_refuses_bad_arguments_and_draws_nothing():
    draw = compiled_draw()
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    for args, error in (((0, 1, True, g), ValueError), ((5, -1, True, g), ValueError),
                        ((5, 6, False, g), ValueError), ((5, 2, True, "gen"), TypeError),
                        ((5.0, 2, True, g), TypeError), ((5, 2, True), TypeError)):
        with pytest.raises(error):
            draw(*args)
    assert torch.equal(g.get_state(), state)


def test_choose_subset_checks_its_arguments():
    for args, kwargs, error, match in (
            ((0, 1), {}, ValueError, "size"), ((4, -1), {}, ValueError, "subset_size"),
            ((4, 5), {"replace": False}, ValueError, "at most size 4"), ((4, 2.0), {}, TypeError, "subset_size"),
            ((4, 2), {"replace": 1}, TypeError, "replace"), ((4, 2), {"generator": 3}, TypeError, "generator")):
        with pytest.raises(error, match=match):
            choose_subset(*args, **kwargs)
    assert choose_subset(4, 0) == [] and len(choose_subset(4, 9)) == 9
