"""A faster ``conv2d`` for the members' batched forward on the CPU: one grouped
convolution in channels-last layout.

Inside ``vmap``, a ``conv2d`` whose input and weight both carry the member dimension
runs as one grouped convolution: torch's batching rule folds the K members into the
channels (input ``[B, K*C, H, W]``, weight ``[K*O, C, kh, kw]``, ``groups=K``) in the
NCHW layout. On the CPU, oneDNN's grouped convolution is several times faster in the
channels-last layout, where the K*C channels are the innermost dimension (the
``conv2d`` of the seed ConvNet's second layer at K=12 on 8x8 inputs, forward only:
2.7 ms NCHW, 0.47 ms channels-last; docs/benchmarks.md, "Batched convolutions").

:class:`MemberConvMode` is a ``TorchFunctionMode`` that the batched swarm's forward
enters: it sends such a ``conv2d`` to :func:`grouped_channels_last_conv2d`, which lays
the input and the weight out channels-last, runs the grouped convolution and hands
back the output in the NCHW layout the batching rule gives (same shape, same strides,
so the model's ``view``\\ s and ``is_contiguous`` checks see what they would without
it). The values agree with the batching rule's to rounding (another algorithm sums in
another order). Every other call, and every ``conv2d`` it does not cover, goes on
unchanged:

- an input without the member dimension (the shared first-layer input: the rule
  already runs one ordinary convolution there);
- tensors off the CPU, or not float32, or under CPU autocast (not measured);
- tensors batched at another vmap level (a ``vmap`` inside the model's forward);
- shapes the convolution would refuse (the rule's own error then says so).
"""
from __future__ import annotations

import contextlib

import torch
from torch.overrides import TorchFunctionMode

try:  # functorch's private per-level pieces (as member_vmap uses)
    from torch._C._functorch import (_add_batch_dim, _unwrap_batched, is_batchedtensor, maybe_current_level,
                                     maybe_get_level)
    AVAILABLE = True
except ImportError:  # pragma: no cover - another torch layout: the batching rule as it is
    AVAILABLE = False

__all__ = ["MemberConvMode", "member_conv_mode", "grouped_channels_last_conv2d", "has_conv2d", "AVAILABLE"]

_CONV2D = torch.conv2d  # torch.nn.functional.conv2d is the same builtin


def _conv_args(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return input, weight, bias, stride, padding, dilation, groups


def _member_tensor(t, level: int):
    """``t``'s physical tensor and member dim when ``t`` is batched at ``level`` and
    nowhere else; ``(t, None)`` for a plain tensor; None for anything else."""
    if not is_batchedtensor(t):
        return t, None
    if maybe_get_level(t) != level:
        return None
    physical, dim = _unwrap_batched(t, level)
    return None if is_batchedtensor(physical) else (physical, dim)


def grouped_channels_last_conv2d(x, weight, bias, stride, padding, dilation, groups):
    """K members' ``conv2d`` as one grouped convolution in channels-last layout:
    ``x`` ``[B, K, C, H, W]``, ``weight`` ``[K, O, C // groups, kh, kw]``, ``bias``
    ``[K, O]`` or None; returns ``[B, K, O, Ho, Wo]``, the NCHW ``[B, K*O, Ho, Wo]``
    output split (the layout torch's batching rule returns). Differentiable."""
    b, k, c, h, w = x.shape
    _, o, cg, kh, kw = weight.shape
    # memory order (B, H, W, K, C): the K*C channels innermost (a view if already so)
    x_cl = x.permute(0, 3, 4, 1, 2).reshape(b, h, w, k * c).permute(0, 3, 1, 2)
    w_cl = weight.permute(0, 1, 3, 4, 2).reshape(k * o, kh, kw, cg).permute(0, 3, 1, 2)
    out = _CONV2D(x_cl, w_cl, None if bias is None else bias.reshape(k * o), stride, padding, dilation,
                  k * groups)
    return out.contiguous().view(b, k, o, *out.shape[2:])


class MemberConvMode(TorchFunctionMode):
    """Sends the members' batched ``conv2d`` calls to
    :func:`grouped_channels_last_conv2d` (see the module docstring); enter it inside
    the vmap whose level holds the members."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is _CONV2D:
            out = self._conv2d(*args, **kwargs)
            if out is not None:
                return out
        return func(*args, **kwargs)

    @staticmethod
    def _conv2d(*args, **kwargs):
        try:
            input, weight, bias, stride, padding, dilation, groups = _conv_args(*args, **kwargs)
        except TypeError:
            return None  # let torch word the error
        if not (isinstance(input, torch.Tensor) and isinstance(weight, torch.Tensor)
                and (bias is None or isinstance(bias, torch.Tensor))
                and is_batchedtensor(input) and is_batchedtensor(weight)):
            return None
        level = maybe_current_level()
        if level is None:
            return None
        x, w, bi = (_member_tensor(input, level), _member_tensor(weight, level),
                    (None, None) if bias is None else _member_tensor(bias, level))
        if x is None or w is None or bi is None or x[1] is None or w[1] is None:
            return None
        (x, x_dim), (w, w_dim), (bi, b_dim) = x, w, bi
        if (x.dim() != 5 or w.dim() != 5 or x.device.type != "cpu" or x.dtype != torch.float32
                or w.dtype != torch.float32 or w.device != x.device
                or (bi is not None and (bi.dtype != torch.float32 or bi.device != x.device))
                or torch.is_autocast_enabled("cpu")):
            return None
        x = x.movedim(x_dim, 1)
        w = w.movedim(w_dim, 0)
        k, o, cg = w.shape[:3]
        if (not isinstance(groups, int) or groups < 1 or x.shape[1] != k or x.shape[2] != cg * groups
                or o % groups):
            return None  # the batching rule raises torch's own error
        if bi is not None:
            bi = bi.movedim(b_dim, 0) if b_dim is not None else bi.expand(k, *bi.shape)
            if bi.shape != (k, o):
                return None
        out = grouped_channels_last_conv2d(x, w, bi, stride, padding, dilation, groups)
        return _add_batch_dim(out, 1, level)


def has_conv2d(module: torch.nn.Module) -> bool:
    """Whether ``module`` or a submodule is a ``Conv2d``."""
    return any(isinstance(m, torch.nn.Conv2d) for m in module.modules())


def member_conv_mode(module: torch.nn.Module):
    """The context the batched forward of ``module``'s members runs in:
    :class:`MemberConvMode` when ``module`` has a ``Conv2d`` (the mode's Python hook
    sees every torch call, a cost only a convolution repays), else a no-op."""
    if AVAILABLE and has_conv2d(module):
        return MemberConvMode()
    return contextlib.nullcontext()
