"""nytorch_ext.ops.validation's argument helpers: the user-facing ones that every
layer uses (number, probability, positive_int) and the public ops' conversions
(scalar, scalar_list, int64_bits, tensor_list, shared_or_list, one_or_many)."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from nytorch_ext.ops import validation as check

# ------------------------------------------------------------------- number

@pytest.mark.parametrize("value, expected", [
    (1, 1.0), (2.5, 2.5), (-3, -3.0), (np.float32(0.5), 0.5), (np.int64(7), 7.0), (Fraction(1, 4), 0.25),
])
def test_number_accepts_real_numbers(value, expected):
    result = check.number(value, "v")
    assert result == expected and type(result) is float


@pytest.mark.parametrize("value", [True, False, "1", None, 1j, [1.0], torch.tensor(1.0), np.bool_(True)])
def test_number_rejects_what_is_not_a_real_number(value):
    with pytest.raises(TypeError, match=r"^v must be a real number, got "):
        check.number(value, "v")


def test_number_type_error_is_configurable():
    with pytest.raises(ValueError, match=r"^v must be a real number"):
        check.number("x", "v", type_error=ValueError)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_number_finite_by_default(value):
    with pytest.raises(ValueError, match=r"^v must be finite"):
        check.number(value, "v")
    result = check.number(value, "v", finite=False)
    assert result == value or (math.isnan(result) and math.isnan(value))


def test_number_minimum():
    assert check.number(0.0, "v", minimum=0.0) == 0.0
    with pytest.raises(ValueError, match=r"^v must be >= 0.0, got -1.0"):
        check.number(-1, "v", minimum=0.0)
    with pytest.raises(ValueError, match=r"^v must be >= 0.0, got nan"):  # NaN is not >= anything
        check.number(math.nan, "v", finite=False, minimum=0.0)


def test_number_tensors_only_when_asked():
    assert check.number(torch.tensor(0.25), "v", tensor=True) == 0.25
    assert check.number(torch.tensor([[2]]), "v", tensor=True) == 2.0  # one element, any shape
    with pytest.raises(TypeError, match=r"^v must be a real number, got Tensor"):
        check.number(torch.ones(2), "v", tensor=True)
    with pytest.raises(TypeError, match=r"^v must be a real number, got complex"):
        check.number(torch.tensor(1j), "v", tensor=True)
    with pytest.raises(TypeError, match=r"^v must be a real number, got bool"):
        check.number(torch.tensor(True), "v", tensor=True)


def test_number_constant_rejects_a_tensor_that_requires_grad_under_grad_mode():
    w = torch.tensor(0.5, requires_grad=True)
    assert check.number(w, "w", tensor=True) == 0.5  # not asked: its value is taken
    with pytest.raises(RuntimeError, match=r"^w is a tensor that requires grad"):
        check.number(w, "w", tensor=True, constant=True)
    with torch.no_grad():
        assert check.number(w, "w", tensor=True, constant=True) == 0.5


# -------------------------------------------------------------- probability

def test_probability_open_interval_by_default():
    assert check.probability(0.5, "p") == 0.5
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"^p must be in the open interval \(0, 1\)"):
            check.probability(bad, "p")


def test_probability_closed_interval():
    assert check.probability(0, "p", open_interval=False) == 0.0
    assert check.probability(1, "p", open_interval=False) == 1.0
    with pytest.raises(ValueError, match=r"^p must be in \[0, 1\]"):
        check.probability(1.01, "p", open_interval=False)


@pytest.mark.parametrize("value, exc", [(math.nan, ValueError), (math.inf, ValueError), ("0.5", TypeError),
                                        (True, TypeError)])
def test_probability_rejects_non_numbers_and_non_finite(value, exc):
    with pytest.raises(exc, match=r"^p must"):
        check.probability(value, "p")


# ------------------------------------------------------------- positive_int

def test_positive_int():
    assert check.positive_int(3, "n") == 3
    result = check.positive_int(np.int64(4), "n")
    assert result == 4 and type(result) is int
    assert check.positive_int(0, "n", minimum=0) == 0
    with pytest.raises(ValueError, match=r"^n must be an int >= 1, got 0"):
        check.positive_int(0, "n")
    with pytest.raises(ValueError, match=r"^n must be an int >= 2, got 1"):
        check.positive_int(1, "n", minimum=2)


@pytest.mark.parametrize("value", [True, 2.0, "2", None, torch.tensor(2)])
def test_positive_int_rejects_what_is_not_an_int(value):
    with pytest.raises(TypeError, match=r"^n must be an int >= 1, got "):
        check.positive_int(value, "n")
    with pytest.raises(ValueError, match=r"^n must be an int"):
        check.positive_int(value, "n", type_error=ValueError)


# ----------------------------------------------------- the ops' conversions

def test_scalar_is_number_with_the_ops_rules():
    assert check.scalar(0.5, "a") == 0.5
    assert check.scalar(2, "a") == 2.0
    assert math.isinf(check.scalar(math.inf, "a"))  # the ops propagate Inf and NaN
    assert check.scalar(torch.tensor(0.25, dtype=torch.float64), "a") == 0.25
    with pytest.raises(TypeError, match=r"^a must be a real number"):
        check.scalar(True, "a")
    with pytest.raises(RuntimeError, match=r"^a is a tensor that requires grad"):
        check.scalar(torch.tensor(1.0, requires_grad=True), "a")


def test_scalar_list():
    assert check.scalar_list([0.5, 1.5], "c") == [0.5, 1.5]
    assert check.scalar_list((1, 2.5), "c") == [1.0, 2.5]
    assert check.scalar_list(torch.tensor([0.5, 2.0]), "c") == [0.5, 2.0]
    assert check.scalar_list(np.array([1.0, 3.0]), "c") == [1.0, 3.0]
    with pytest.raises(TypeError, match=r"^c\[1\] must be a real number"):
        check.scalar_list([0.5, "x"], "c")
    for bad in ("12", 1.0, None, {0.5}):
        with pytest.raises(TypeError, match=r"^c must be a sequence of numbers"):
            check.scalar_list(bad, "c")
    with pytest.raises(RuntimeError, match=r"^c is a tensor that requires grad"):
        check.scalar_list(torch.ones(2, requires_grad=True), "c")


def test_one_or_many():
    assert check.one_or_many(0.5, "w") == [0.5]
    assert check.one_or_many(torch.tensor(0.5), "w") == [0.5]  # a 0-d tensor is one number
    assert check.one_or_many([0.5, 0.25], "w") == [0.5, 0.25]
    assert check.one_or_many(torch.tensor([0.5, 0.25]), "w") == [0.5, 0.25]
    with pytest.raises(TypeError, match=r"^w must be a real number"):
        check.one_or_many(None, "w")
    with pytest.raises(TypeError, match=r"^w must be a sequence of numbers, got str"):
        check.one_or_many("0.5", "w")


def test_int64_bits():
    assert check.int64_bits(5, "seed") == 5
    assert check.int64_bits(-1, "seed") == -1
    assert check.int64_bits(2**64 - 1, "seed") == -1  # the same bits
    assert check.int64_bits(2**63, "seed") == -(2**63)
    assert check.int64_bits(np.uint64(7), "seed") == 7
    for bad in (2**64, -(2**63) - 1):
        with pytest.raises(ValueError, match=r"^seed must be in \[-2\*\*63, 2\*\*64\)"):
            check.int64_bits(bad, "seed")
    for bad in (True, 1.0, "1", None):
        with pytest.raises(TypeError, match=r"^seed must be an int"):
            check.int64_bits(bad, "seed")


def test_int64_list_takes_the_fast_path_only_for_plain_int64_values():
    assert check.scalar_list([0, 1, 2**63 - 1], "streams", check.int64_bits, "ints") == [0, 1, 2**63 - 1]
    assert check.scalar_list([2**64 - 1, 3], "streams", check.int64_bits, "ints") == [-1, 3]
    with pytest.raises(TypeError, match=r"^streams\[1\] must be an int"):
        check.scalar_list([1, True], "streams", check.int64_bits, "ints")
    with pytest.raises(TypeError, match=r"^streams must be a sequence of ints"):
        check.scalar_list(3, "streams", check.int64_bits, "ints")


def test_tensor_and_tensor_list():
    x = torch.ones(2)
    assert check.tensor(x, "x") is x
    with pytest.raises(TypeError, match=r"^x must be a tensor, got list"):
        check.tensor([1.0], "x")
    assert check.tensor_list((x, x), "xs") == [x, x]
    with pytest.raises(TypeError, match=r"^xs\[1\] must be a tensor, got float"):
        check.tensor_list([x, 1.0], "xs")
    for bad in (x, None, 3):
        with pytest.raises(TypeError, match=r"^xs must be a list or tuple of tensors"):
            check.tensor_list(bad, "xs")


def test_shared_or_list():
    x = torch.ones(2)
    assert check.shared_or_list(x, "source") == ([x], True)
    assert check.shared_or_list([x], "source") == ([x], False)
    with pytest.raises(TypeError, match=r"^source must be a list or tuple of tensors"):
        check.shared_or_list(1.0, "source")


def test_inplace_target_names_the_callers_argument():
    base = torch.zeros(8)
    with pytest.raises(RuntimeError, match=r"^x must be contiguous"):
        check.inplace_target(base[::2], "x")
    with pytest.raises(TypeError, match=r"^x must be float32"):
        check.inplace_target(torch.zeros(2, dtype=torch.int64), "x")
    with pytest.raises(TypeError, match=r"^x must be a tensor"):
        check.inplace_target(None, "x")


@pytest.mark.parametrize("bad", [True, "0.5", None, float("nan"), float("inf"), -1.0])
def test_expected_words_every_rejection_of_a_number(bad):
    """``expected=`` keeps a caller's wording for every way a value is refused."""
    with pytest.raises(ValueError, match=r"^noise must be a finite number >= 0, got "):
        check.number(bad, "noise", minimum=0.0, type_error=ValueError, expected="a finite number >= 0")


@pytest.mark.parametrize("bad", [True, 1.5, "3", 0, -2])
def test_expected_words_every_rejection_of_an_int(bad):
    with pytest.raises(ValueError, match=r"^size must be a positive int, got "):
        check.positive_int(bad, "size", type_error=ValueError, expected="a positive int")
    kind = TypeError if isinstance(bad, (bool, float, str)) else ValueError
    with pytest.raises(kind, match=r"^size must be a positive int, got "):
        check.positive_int(bad, "size", expected="a positive int")


def test_is_real_is_the_number_rule_as_a_predicate():
    for yes in (0, -3, 2.5, float("inf"), float("nan"), Fraction(1, 3), np.float32(1.5), np.int64(2)):
        assert check.is_real(yes)
    for no in (True, False, "1", None, 1j, torch.tensor(1.0), [1.0]):
        assert not check.is_real(no)
