"""Swarm update arguments (nytorch_ext/swarm/arguments.py): the fast paths decide as the full rules do."""
import math

import pytest
import torch

from nytorch_ext.swarm.arguments import member_losses, subset_generator


def test_member_losses_fast_path_refuses_nan_and_keeps_infinities():
    assert member_losses([1.0, 2.0], 2) == [1.0, 2.0]
    with pytest.raises(ValueError, match=r"losses\[1\] is NaN"):
        member_losses([1.0, math.nan, 2.0], 3)
    # +inf and -inf sum to NaN: the full rule decides, and neither is NaN
    assert member_losses([math.inf, -math.inf], 2) == [math.inf, -math.inf]
    assert member_losses([1e308, 1e308], 2) == [1e308, 1e308]  # the sum overflows to inf: still no NaN
    losses = [1.0, 2.0]
    assert member_losses(losses, 2) is not losses  # a copy: later edits do not reach a step's plan


def test_member_losses_fast_path_keeps_the_length_and_type_checks():
    with pytest.raises(ValueError, match="3 entries but the pool has 2"):
        member_losses([1.0, 2.0, 3.0], 2)
    assert member_losses([1, 2.5, torch.tensor(3.0)], 3) == [1, 2.5, 3.0]
    with pytest.raises(TypeError):
        member_losses([1.0, "2"], 2)


def test_subset_generator_remembers_only_what_it_checked():
    g = torch.Generator()
    assert subset_generator(g) is g
    assert subset_generator(g) is g  # the remembered one
    assert subset_generator(None) is None
    with pytest.raises(TypeError, match="torch.Generator or None"):
        subset_generator(object())
    assert subset_generator(torch.Generator().manual_seed(1)) is not g
    if torch.cuda.is_available():  # pragma: no cover - only where a GPU is
        with pytest.raises(ValueError, match="CPU torch.Generator"):
            subset_generator(torch.Generator(device="cuda"))
