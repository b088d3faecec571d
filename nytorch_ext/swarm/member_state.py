"""Swarm members' state dicts: compact when saved, checked before they are loaded.

A member's parameters are views of a row of the swarm's [K, N] buffer, and
``torch.save`` writes a view's whole storage; :func:`install_compact_state` gives a
member a state-dict hook that replaces such views by compact copies, so a member's
state holds that member only. :func:`check_module_state` raises what
``load_state_dict`` would refuse before it runs (torch copies the matching entries
before it reports a mismatch, so a refused load would otherwise be half done).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class CompactState:
    """A member's state-dict post-hook: every value that is a view into a larger
    storage (a row of the swarm's [K, N] buffer) becomes a compact copy, so that
    ``torch.save`` of the member's state writes the member only. Values that are
    Parameters (``keep_vars=True``) are left as they are. Stateless, so a member with
    the hook still pickles and deep-copies."""

    def __call__(self, module, state_dict, prefix, local_metadata) -> None:
        keys = [k for k in state_dict if k.startswith(prefix)]
        if any(isinstance(state_dict[k], nn.Parameter) for k in keys):
            return  # keep_vars=True: the caller asked for the Parameter objects
        for k in keys:
            v = state_dict[k]
            if type(v) is Tensor and v.layout == torch.strided and not v.is_meta \
                    and v.untyped_storage().nbytes() > v.numel() * v.element_size():
                state_dict[k] = v.clone()


def install_compact_state(member: nn.Module) -> None:
    """Give ``member`` the :class:`CompactState` hook (once)."""
    if not any(isinstance(h, CompactState) for h in member._state_dict_hooks.values()):
        member.register_state_dict_post_hook(CompactState())


def listed(keys: list) -> str:
    """The first three of ``keys`` and how many more (for error messages)."""
    return f"{keys[:3]}" + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


def check_module_state(module: nn.Module, state, strict: bool, what: str) -> None:
    """What ``module.load_state_dict(state, strict)`` would refuse (or half-load: torch
    copies the matching entries before it reports a mismatch), raised before it runs."""
    if not isinstance(state, dict):
        raise TypeError(f"{what} must be a state_dict (a dict), got {type(state).__name__}")
    own = module.state_dict(keep_vars=True)
    # BatchNorm fills in a missing num_batches_tracked itself (states from old torch versions)
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing {listed(missing)}")
        if unexpected:
            parts.append(f"unexpected {listed(unexpected)}")
        raise ValueError(f"{what} does not match the member's keys ({'; '.join(parts)}): a state of "
                         f"another architecture; nothing was loaded")
    for k, target in own.items():
        if k not in state or not isinstance(target, Tensor):
            continue
        value = state[k]
        if not isinstance(value, Tensor):
            raise TypeError(f"{what}[{k!r}] must be a tensor, got {type(value).__name__}; nothing was loaded")
        if value.shape != target.shape:
            raise ValueError(f"{what}[{k!r}] has shape {tuple(value.shape)}, the member's is "
                             f"{tuple(target.shape)}: a state of another architecture; nothing was loaded")
