"""Checkpoints: what a run saves, how it is written, and how a resume is checked.

A checkpoint is one ``torch.save`` file (:data:`CHECKPOINT_FORMAT`) holding the swarm,
every optimizer's state and class, every LR scheduler's state and class and every
GradScaler's state (or None), the run's precision, the trainer's APSO generator, the RNG
states, the epoch counter and stop flag, the History and the callbacks' states. Format
2 added the schedulers, scalers and precision; format 1 files (without them) still
resume runs that have no scheduler and full precision. It is written to a
temporary file and renamed over the last one. A resume reads it
(:func:`read_checkpoint`: the file and the swarm's keys and shapes) and checks all the
rest against the new run (:func:`check_resume`) before anything is loaded.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
from torch import Tensor

from ..ops.validation import positive_int
from .history import History
from .rng import check_rng_state, rng_state

CHECKPOINT_FORMAT = "nytorch_ext.SwarmTrainer/2"
READABLE_FORMATS = ("nytorch_ext.SwarmTrainer/1", CHECKPOINT_FORMAT)
CHECKPOINT_KEYS = ("size", "epoch", "stopped", "swarm", "optimizers", "generator", "rng", "history",
                   "callbacks")
# torch.optim optimizers whose per-parameter state tensors have the parameter's shape
ELEMENTWISE_OPTIMIZERS = {"SGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Rprop", "Adagrad",
                          "Adadelta", "ASGD"}
# param-group entries that differ between torch versions (filled in by Optimizer.__setstate__)
# or are added by LR schedulers: not evidence of another kind of optimizer
_VERSION_FLAGS = {"foreach", "maximize", "capturable", "differentiable", "fused", "decoupled_weight_decay",
                  "initial_lr"}


@dataclass
class CheckpointFile:
    """A checkpoint read by :func:`read_checkpoint`: its path and state."""
    path: str
    state: dict


@dataclass
class CheckedResume:
    """What :func:`check_resume` made of a checkpoint, to apply: its History and
    ``(callback, saved state)`` pairs."""
    history: History
    callback_states: list


def class_name(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


# ------------------------------------------------------------------ writing

def checkpoint_state(*, swarm, optimizers: list, callbacks: list, epoch: int, stopped: bool,
                     generator: torch.Generator, loader, history: History, schedulers: list | None = None,
                     scalers: list | None = None, precision: str = "32") -> dict:
    """The state a checkpoint holds (see the module docstring)."""
    saved = {}
    for i, cb in enumerate(callbacks):
        if callable(getattr(cb, "state_dict", None)):
            saved[f"{i}:{type(cb).__name__}"] = cb.state_dict()
    return {"format": CHECKPOINT_FORMAT, "size": len(swarm),
            "epoch": epoch, "stopped": stopped,
            "swarm": swarm.state_dict(),
            "optimizers": [o.state_dict() for o in optimizers],
            "optimizer_classes": [class_name(o) for o in optimizers],
            "schedulers": None if schedulers is None else [s.state_dict() for s in schedulers],
            "scheduler_classes": None if schedulers is None else [class_name(s) for s in schedulers],
            "scalers": None if scalers is None else [s.state_dict() for s in scalers],
            "precision": precision,
            "generator": generator.get_state(),
            "rng": rng_state(loader),
            "history": history.to_dict(),
            "callbacks": saved}


def save_atomic(state: dict, path) -> str:
    """``torch.save(state)`` to a temporary file, then renamed over ``path``, so an
    interrupted save leaves the last checkpoint intact. Returns the path."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return path


# ------------------------------------------------------------------ reading

def read_checkpoint(path, swarm, view=None) -> CheckpointFile:
    """The checkpoint at ``path``, read and checked against ``swarm`` (its size, keys
    and shapes); errors name the file. Changes nothing. ``view(state, path)``: the
    state as this process loads it (a distributed rank: cut to its block), applied once
    the file is known to be a checkpoint."""
    try:
        path = os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"resume_from must be a path (str or os.PathLike), got {type(path).__name__}") from None
    if os.path.isdir(path):
        raise ValueError(f"resume_from: {path!r} is a directory, not a checkpoint file")
    if not os.path.exists(path):
        raise FileNotFoundError(f"resume_from: no checkpoint at {path!r}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"resume_from: the checkpoint {path!r} is empty (0 bytes): an interrupted "
                         f"write or not a checkpoint")
    # RNG states include Python and NumPy objects: only load checkpoints you trust.
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError(f"resume_from: cannot read the checkpoint {path!r}: it is truncated, corrupt "
                         f"or not a torch.save file ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("format") not in READABLE_FORMATS:
        raise ValueError(f"resume_from: {path!r} is not a SwarmTrainer checkpoint")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise ValueError(f"resume_from: the checkpoint {path!r} is incomplete (missing {missing})")
    if view is not None:
        state = view(state, path)
    if state["size"] != len(swarm):
        raise ValueError(f"resume_from: the checkpoint {path!r} holds {state['size']} members, "
                         f"this swarm has {len(swarm)}")
    try:
        swarm.check_state_dict(state["swarm"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"resume_from: the checkpoint {path!r} does not fit this swarm: {e}") from None
    return CheckpointFile(path, state)


# ------------------------------------------------------------------ checking a resume

def optimizer_mismatch(opt, saved, saved_class) -> str | None:
    """Why ``opt.load_state_dict(saved)`` would fail or load a state of another
    optimizer (None when it fits)."""
    if saved_class is not None and saved_class != class_name(opt):
        return f"the checkpoint's optimizer is {saved_class}, this run's is {class_name(opt)}"
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) \
            or not isinstance(saved.get("param_groups"), (list, tuple)):
        return "the saved state is not an optimizer state_dict"
    groups = opt.param_groups
    if len(saved["param_groups"]) != len(groups):
        return (f"the checkpoint's optimizer has {len(saved['param_groups'])} parameter group(s), "
                f"this run's {type(opt).__name__} has {len(groups)}")
    params = {}
    for j, (g, sg) in enumerate(zip(groups, saved["param_groups"])):
        if not isinstance(sg, dict) or not isinstance(sg.get("params"), (list, tuple)):
            return f"param_groups[{j}] is not a parameter group"
        if len(sg["params"]) != len(g["params"]):
            return (f"param_groups[{j}] holds {len(sg['params'])} parameters in the checkpoint, "
                    f"{len(g['params'])} here")
        ours, theirs = set(g) - {"params"}, set(sg) - {"params"}
        if (theirs ^ ours) - _VERSION_FLAGS:
            return (f"the checkpoint's optimizer ({saved_class or 'of unrecorded class'}) has the settings "
                    f"{sorted(theirs)}, this run's {type(opt).__name__} has {sorted(ours)}: another kind "
                    f"of optimizer")
        params.update(zip(sg["params"], g["params"]))
    for key, value in saved["state"].items():
        if key not in params:
            return f"the saved state is for parameter {key!r}, which no parameter group holds"
        if not isinstance(value, dict):
            return f"the saved state of parameter {key!r} is not a dict"
        if type(opt).__module__.startswith("torch.optim") and type(opt).__name__ in ELEMENTWISE_OPTIMIZERS:
            p = params[key]
            for name, v in value.items():
                if isinstance(v, Tensor) and v.dim() > 0 and v.shape != p.shape:
                    return (f"the saved {name!r} of parameter {key!r} has shape {tuple(v.shape)}, "
                            f"the parameter {tuple(p.shape)}")
    return None


def match_callback_states(callbacks: list, saved: dict) -> list:
    """(callback, saved state) pairs: saved keys are ``"<index>:<ClassName>"``; the
    n-th saved state of a class goes to the n-th callback of that class that has a
    state (so a progress bar added or not does not shift them)."""
    def position(key) -> int:
        index = str(key).split(":", 1)[0]
        return int(index) if index.isdigit() else -1

    by_class: dict = {}
    for key in sorted(saved, key=position):
        by_class.setdefault(str(key).split(":", 1)[-1], []).append(saved[key])
    pairs, seen = [], {}
    for cb in callbacks:
        if not callable(getattr(cb, "state_dict", None)):
            continue
        name = type(cb).__name__
        rank = seen.get(name, 0)
        seen[name] = rank + 1
        states = by_class.get(name, [])
        if rank < len(states):
            pairs.append((cb, states[rank]))
    return pairs


def scheduler_mismatch(schedulers: list | None, saved, saved_classes) -> str | None:
    """Why the checkpoint's scheduler states do not fit this run's ``schedulers`` (None when they do)."""
    if schedulers is None and saved is None:
        return None
    if schedulers is None:
        return "the checkpoint's run had an LR scheduler, this run has none; pass the same scheduler="
    if saved is None:
        return ("the checkpoint's run had no LR scheduler, this run has one (its schedule would restart "
                "at the resumed epoch); resume without scheduler=")
    if not isinstance(saved, (list, tuple)) or len(saved) != len(schedulers) \
            or not all(isinstance(s, dict) for s in saved):
        return f"the checkpoint does not hold one scheduler state per member ({len(schedulers)})"
    classes = saved_classes if isinstance(saved_classes, (list, tuple)) else [None] * len(saved)
    for i, (s, c) in enumerate(zip(schedulers, classes)):
        if c is not None and c != class_name(s):
            return f"scheduler[{i}]: the checkpoint's scheduler is {c}, this run's is {class_name(s)}"
    return None


def check_resume(checkpoint: CheckpointFile, trainer, optimizers: list, callbacks: list,
                 loader, *, schedulers: list | None = None, precision: str = "32") -> CheckedResume:
    """Everything ``fit`` would load from ``checkpoint`` checked against this run
    (optimizers, schedulers, precision, generator, History, callbacks' states, RNG
    states), before any of it is applied. ``trainer`` is handed to the callbacks'
    ``check_state_dict``."""
    path, state = checkpoint.path, checkpoint.state
    size = len(trainer)  # the whole swarm's K (a distributed rank's trainer.swarm is its block)

    def refuse(message, cls=ValueError):
        raise cls(f"resume_from {path!r}: {message}")

    # optimizers: count, classes, param groups, per-parameter state
    saved = state["optimizers"]
    if not isinstance(saved, (list, tuple)) or len(saved) != len(optimizers):
        refuse(f"the checkpoint holds {len(saved) if isinstance(saved, (list, tuple)) else '?'} "
               f"optimizer states, this run has {len(optimizers)} optimizers")
    classes = state.get("optimizer_classes")  # absent in older checkpoints
    if not isinstance(classes, (list, tuple)) or len(classes) != len(optimizers):
        classes = [None] * len(optimizers)
    for i, (opt, s) in enumerate(zip(optimizers, saved)):
        problem = optimizer_mismatch(opt, s, classes[i])
        if problem:
            refuse(f"optimizer[{i}]: {problem}; resume with the optimizer of the run that wrote the "
                   f"checkpoint (to change optimizers, load only the weights: "
                   f"trainer.swarm.load_state_dict(torch.load(path, weights_only=False)['swarm']))")
    problem = scheduler_mismatch(schedulers, state.get("schedulers"), state.get("scheduler_classes"))
    if problem:
        refuse(problem)
    saved_precision = state.get("precision", "32")  # format 1: full precision
    if saved_precision != precision:
        refuse(f"the checkpoint's run trained in precision={saved_precision!r}, this run in {precision!r}; "
               f"resume with the same precision")
    scalers = state.get("scalers")
    if (scalers is not None) != (precision == "fp16") or \
            (scalers is not None and (not isinstance(scalers, (list, tuple)) or len(scalers) != len(optimizers))):
        refuse("the GradScaler states do not fit this run (one per member with precision='fp16', else none)")
    # the trainer's generator and the RNG states: set on throwaway objects
    try:
        torch.Generator().set_state(state["generator"])
    except (TypeError, RuntimeError, ValueError) as e:
        refuse(f"the APSO generator state is not valid ({e})")
    check_rng_state(state["rng"], loader, refuse)
    try:
        positive_int(state["epoch"], "epoch", minimum=0)
        valid_counters = isinstance(state["stopped"], bool)
    except (TypeError, ValueError):
        valid_counters = False
    if not valid_counters:
        refuse("the epoch counter or the stop flag is not valid")
    try:
        history = History.from_dict(state["history"])
    except (TypeError, ValueError, KeyError) as e:
        refuse(f"the History is not valid ({e})")
    if history.num_particles != size:
        refuse(f"the History has {history.num_particles} particles, this swarm {size}")
    # callbacks: each saved state to the callback of its class and rank
    if not isinstance(state["callbacks"], dict):
        refuse("the callbacks' states are not a dict")
    cb_states = []
    for cb, s in match_callback_states(callbacks, state["callbacks"]):
        check = getattr(cb, "check_state_dict", None)
        if callable(check):
            try:
                check(s, trainer)
            except (TypeError, ValueError, KeyError) as e:
                refuse(f"the saved state of {type(cb).__name__} does not fit it: {e}")
        cb_states.append((cb, s))
    return CheckedResume(history, cb_states)
