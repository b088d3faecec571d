"""The APSO step's parts (nytorch_ext/swarm/apso.py): the plan's weights and the result."""
import dataclasses
import math

import pytest
from hypothesis import given, settings, strategies as st

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
