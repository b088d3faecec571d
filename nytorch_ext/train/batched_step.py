"""Batched training: every member's gradient step in one forward, one backward, one optimizer step.

``SwarmTrainer(swarm, batched=True)`` trains the K members as one batched model
(:class:`~nytorch_ext.swarm.batched.BatchedSwarm`): the forward is one ``torch.func.vmap``
over the members with the batch shared, each member's loss is the sequential step's
loss (sample weights and the accumulation window's scaling included), their sum has one
backward, and one optimizer steps the leaves, the parameters' [K, *shape] views of the
swarm's [K, N] buffers. The
members' Parameter objects stay views of those buffers, so the APSO steps between the
gradient steps work on the same memory, and a member can be used as an ordinary module
at any time.

What differs from the sequential step (:mod:`~nytorch_ext.train.step`):

- ``optimizer`` is a factory called once, on the leaves (one parameter group); only
  elementwise ``torch.optim`` classes (:data:`ELEMENTWISE`) are accepted: on the rows of
  one buffer they are K independent optimizers (tested against K of them). A list of
  per-member optimizers, LBFGS, or any other class is refused. ``trainer.optimizers`` is
  a list of that one optimizer; its learning rate is every member's (logged K times as
  ``lr``). Per-member learning rates are not offered.
- ``scheduler`` is called once, on that optimizer; a ``ReduceLROnPlateau`` steps on the
  best member's monitored value.
- Clipping is per member: ``grad_clip_norm`` scales member i's gradients by its own
  total norm over its rows of every leaf (as ``clip_grad_norm_`` over its own
  parameters would), ``grad_clip_value`` clamps elementwise.
- ``on_before_optimizer_step(trainer, None, optimizer)`` runs once per step, with
  ``member_index=None`` and the batched optimizer (member i's gradients are row i of
  each leaf's ``.grad``). The members' own ``.grad`` stay None.
- ``precision="fp16"`` (one GradScaler per member) is refused; ``"bf16"`` works.

:func:`plan_run` decides, before anything is trained, whether a run is batched: with
``batched=True`` a model or optimizer it cannot batch raises (``ValueError`` /
``TypeError`` naming the cause); with ``"auto"`` it warns with the cause and the run is
sequential, as it is where batching measured no faster (:func:`auto_declines`: fewer than
8 members, convolutions other than ``Conv2d``; and, found by the probe, a ``Conv2d`` output
of more than :data:`AUTO_MAX_CONV2D_OUTPUT` elements per sample). Besides the static checks
(:func:`~nytorch_ext.swarm.batched.unsupported_model`) it probes the model: one batched
forward and backward on the first training batch, with every random state saved and
restored around it and the gradients dropped, so the run is unchanged.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..swarm.batched import BatchedSwarm, batched_optimizer_state, member_optimizer_states, unsupported_model
from ..swarm.grouped_conv import has_conv2d
from .batches import to_device
from .checkpoints import CheckpointFile, class_name
from .metrics import as_float, weighted_loss
from .options import make_optimizers, the_seeds_sgd
from .rng import rng_state, set_rng_state
from .schedulers import is_plateau, learning_rates
from .step import GradientSteps, StepSettings

BATCHED_CHOICES = (False, True, "auto")
# torch.optim classes whose update of each element reads only that element's gradient,
# state and the optimizer's scalars (their step counters): on a [K, N] leaf exactly K
# independent optimizers (tests/train/test_batched_optimizers.py checks each one).
ELEMENTWISE = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adamax, torch.optim.NAdam,
               torch.optim.RAdam, torch.optim.RMSprop, torch.optim.Rprop, torch.optim.Adagrad,
               torch.optim.Adadelta, torch.optim.ASGD)


# batched="auto" batches only where benchmarks/swarm_training.py measured it faster on the
# CPU (docs/benchmarks.md#batched-swarm-training): from 8 members (below, about even or
# slower); Conv2d models only where every Conv2d's output is small (the seed ConvNet on
# 8x8 images, at most 640 elements per sample, 1.5-1.6x faster; on 28x28, 5760, 0.6-0.8x:
# the limit lies between, where nothing was measured); no other convolutions (not measured)
AUTO_MIN_MEMBERS = 8
AUTO_MAX_CONV2D_OUTPUT = 2048
CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def auto_declines(swarm) -> str | None:
    """Why ``batched="auto"`` trains ``swarm`` one member at a time although it could
    batch it, as far as the model tells without data: where batched training measured
    no faster (see :data:`AUTO_MIN_MEMBERS`). Conv2d layers are judged by the probe
    (:func:`probe`'s ``conv2d_limit``)."""
    if len(swarm) < AUTO_MIN_MEMBERS:
        return (f"a swarm of {len(swarm)} members (batched training measured no faster below "
                f"{AUTO_MIN_MEMBERS}); batched=True batches it anyway")
    for name, sub in swarm[0].named_modules():
        if isinstance(sub, CONVOLUTIONS) and type(sub) is not nn.Conv2d:
            return (f"the model has convolutions ({name}: {type(sub).__name__}), where batched training "
                    f"was not measured faster; batched=True batches it anyway")
    return None


@contextlib.contextmanager
def conv2d_outputs(module: nn.Module):
    """Records ``(elements per sample, name)`` of every ``Conv2d`` output of ``module``
    inside the block (in a batched forward: per member) into the yielded list."""
    seen: list = []

    def record(name, out):  # [B, C, H, W], or [C, H, W] for one unbatched sample
        seen.append((math.prod(out.shape[1:] if out.dim() == 4 else out.shape), name))

    hooks = [m.register_forward_hook(lambda _m, _i, out, name=name: record(name, out))
             for name, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    try:
        yield seen
    finally:
        for h in hooks:
            h.remove()


def check_batched(value):
    """The trainer's ``batched``: False, True or ``"auto"``."""
    if not (value is True or value is False or (isinstance(value, str) and value == "auto")):
        raise ValueError(f"batched must be False, True or 'auto', got {value!r}")
    return value


def unsupported_optimizer(optimizer) -> str | None:
    """Why ``optimizer`` cannot step a batched swarm as K independent optimizers."""
    if type(optimizer) not in ELEMENTWISE:
        names = ", ".join(c.__name__ for c in ELEMENTWISE)
        return (f"the optimizer {class_name(optimizer)} is not one of the elementwise torch.optim optimizers "
                f"({names}); on the swarm's buffers only those are K independent optimizers")
    if len(optimizer.param_groups) != 1:
        return (f"the optimizer factory made {len(optimizer.param_groups)} parameter groups; in a batched run "
                f"it gets the swarm's buffers and must put them in one group")
    return None


LOSS_MODES = ("flat", "mapped", "loop")


@dataclass(frozen=True)
class BatchedRun:
    """A batched run's model and how its members' losses are computed: ``"flat"`` (a
    known loss, one call on the stacked outputs: :func:`flat_losses`), ``"mapped"``
    (inside the vmap, with the forward) or ``"loop"`` (one call per member's output,
    for a loss vmap cannot run)."""
    model: BatchedSwarm
    loss_mode: str = "mapped"
    probed: tuple = ()  # (loss function, precision) the probe ran with: a next run with both skips it


def _loss_head(loss_fn):
    return lambda out, y, w: weighted_loss(loss_fn, out, y, w)


# losses whose per-sample values (reduction="none") of K members' stacked outputs are
# one call on the outputs flattened to [K * B, ...]; "mean" is their mean per sample
# element, except that the class-index losses divide by the targets not ignored
_FLAT_LOSSES = {F.cross_entropy: True, F.nll_loss: True, F.mse_loss: False, F.l1_loss: False}


def flat_losses(loss_fn, out, y, weight):
    """Each member's :func:`~nytorch_ext.train.metrics.weighted_loss` of the stacked
    outputs ``out`` ([K, B, ...]) in one call of a known loss (:data:`_FLAT_LOSSES`,
    default arguments) on the outputs flattened to [K * B, ...], or None for any other
    loss or target (then each member's loss is its own call)."""
    by_class = _FLAT_LOSSES.get(loss_fn)
    if by_class is None or not isinstance(y, torch.Tensor) or y.dim() == 0 or out.dim() < 2:
        return None
    k, b = out.shape[0], out.shape[1]
    if by_class and (y.is_floating_point() or y.shape[0] != b):
        return None
    if not by_class and tuple(y.shape) != tuple(out.shape[1:]):
        return None
    target = y.unsqueeze(0).expand(k, *y.shape).reshape(k * b, *y.shape[1:])
    per = loss_fn(out.reshape(k * b, *out.shape[2:]), target, reduction="none").view(k, b, -1)
    if weight is not None:
        weight = weight.to(per.dtype)
        return (per.mean(2) * weight).sum(1) / weight.sum()
    if by_class:
        return per.sum((1, 2)) / (y != -100).sum()
    return per.mean((1, 2))


def batched_losses(mode: str, model: BatchedSwarm, loss_fn, head, x, y, weight):
    """``(outputs, losses)``: every member's output ([K, ...]) and loss ([K]) on one
    batch, the losses computed the ``mode`` way (see :class:`BatchedRun`; a
    ``"flat"`` loss that does not fit this batch's target is computed per member)."""
    if mode == "mapped":
        return model.forward(x, head, (y, weight))
    out = model.forward(x)
    values = flat_losses(loss_fn, out, y, weight) if mode == "flat" else None
    if values is None:
        values = torch.stack([weighted_loss(loss_fn, o, y, weight) for o in out])
    return out, values


def probe(model: BatchedSwarm, train, batch_format, loss_fn, settings: StepSettings, device,
          conv2d_limit: int | None = None):
    """One batched forward, loss and backward on ``train``'s first batch: returns
    ``(reason, loss_mode)``, ``reason`` None when it ran. Every RNG state (and the
    loader's generators) is restored and the leaves' gradients dropped afterwards.
    ``conv2d_limit`` (``batched="auto"``): a ``Conv2d`` output of more elements per
    sample is a reason too (batched measured slower there)."""
    saved = rng_state(train)
    try:
        try:
            batch = next(iter(train))
        except StopIteration:
            return None, "loop"
        x, y, w = batch_format.split(batch)
        x, y, w = to_device(x, device), to_device(y, device), to_device(w, device)
        try:
            with settings.precision.autocast(), conv2d_outputs(model.module) as convs:
                written = model.buffers_written(x)
        except Exception as e:
            return f"vmap cannot run the model's forward: {_first_line(e)}", None
        size, name = max(convs, default=(0, None))
        if conv2d_limit is not None and size > conv2d_limit:
            return (f"the model's convolution {name} outputs {size} elements per sample (more than "
                    f"{conv2d_limit}), where batched training measured slower on the CPU (the seed ConvNet on "
                    f"28x28 images; on 8x8 images, at most 640 elements, it measured faster); batched=True "
                    f"batches it anyway"), None
        if written:
            return (f"the model's forward writes into its buffers {written}; a batched forward runs on copies "
                    f"of them (or on the one buffer the members share), so the writes would not be each "
                    f"member's"), None
        modes = ("flat",) if loss_fn in _FLAT_LOSSES else ()
        failure = None
        for mode in modes + ("mapped", "loop"):
            try:
                with settings.precision.autocast():
                    _, losses = batched_losses(mode, model, loss_fn, _loss_head(loss_fn), x, y, w)
                losses.sum().backward()
                return None, mode
            except Exception as e:
                failure = failure or e
            finally:
                for leaf in model.leaves:
                    leaf.grad = None
        return f"the batched loss or backward fails: {_first_line(failure)}", None
    finally:
        for leaf in model.leaves:
            leaf.grad = None
        set_rng_state(saved, train)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def plan_run(choice, swarm, previous: BatchedRun | None, optimizer, previous_optimizers, train, batch_format,
             loss_fn, settings: StepSettings, device) -> tuple[BatchedRun | None, list]:
    """The run's batched model (None: sequential) and its optimizers (one per member,
    or the one batched optimizer), for the trainer's ``batched`` ``choice``. Raises for
    ``batched=True`` when the run cannot be batched; warns and plans a sequential run
    for ``"auto"``. Changes nothing but the probe's (restored) random states."""
    if choice is False:
        return None, make_optimizers(swarm, optimizer, previous_optimizers)
    if isinstance(optimizer, torch.optim.Optimizer):
        make_optimizers(swarm, optimizer, previous_optimizers)  # raises: one optimizer is never valid
    reason, error = None, ValueError
    model = opt = None
    if settings.precision.name == "fp16":
        reason = "precision='fp16' needs one GradScaler per member; use precision='bf16' or '32'"
    elif isinstance(optimizer, Sequence) and not isinstance(optimizer, str):
        reason, error = ("optimizer: a list of per-member optimizers; a batched run builds one optimizer "
                         "on the swarm's buffers from a factory (params -> Optimizer)"), TypeError
    else:
        reason = unsupported_model(swarm)
    if reason is None and choice == "auto":
        reason = auto_declines(swarm)
    if reason is None:
        model = previous.model if previous is not None and previous.model.current() else BatchedSwarm(swarm)
        if optimizer is None and previous_optimizers is not None:
            if previous is not None and model is previous.model and len(previous_optimizers) == 1:
                opt = previous_optimizers[0]
            else:
                reason, error = ("optimizer=None keeps the previous run's optimizers, which are per member "
                                 "(or of buffers the swarm no longer uses); pass a factory"), TypeError
        else:
            opt = (optimizer or the_seeds_sgd)(list(model.leaves))
            if not isinstance(opt, torch.optim.Optimizer):
                raise TypeError("optimizer factory must return a torch.optim.Optimizer")
        if reason is None:
            reason = unsupported_optimizer(opt)
            error = TypeError
    mode, probed = None, (loss_fn, settings.precision)
    judge_convs = choice == "auto" and has_conv2d(swarm[0])  # on this run's data: probe again
    if (reason is None and previous is not None and model is previous.model and previous.probed == probed
            and not judge_convs):
        mode = previous.loss_mode  # the same model, loss and precision ran the last run
    elif reason is None:
        reason, mode = probe(model, train, batch_format, loss_fn, settings, device,
                             AUTO_MAX_CONV2D_OUTPUT if judge_convs else None)
        error = ValueError
    if reason is None:
        return BatchedRun(model, mode, probed), [opt]
    if choice is True:
        raise error(f"batched=True: {reason}")
    warnings.warn(f"batched='auto': training the members one by one: {reason}", UserWarning, stacklevel=3)
    return None, make_optimizers(swarm, optimizer, previous_optimizers)


# ------------------------------------------------------------------ the step

class BatchedSteps(GradientSteps):
    """A batched run's gradient steps, with :class:`~nytorch_ext.train.step.GradientSteps`'
    interface and windows (see the module docstring for what differs)."""

    def __init__(self, run: BatchedRun, optimizer, loss_fn, settings: StepSettings, *, scheduler=None,
                 before_step=()) -> None:
        super().__init__([], [optimizer], loss_fn, settings,
                         schedulers=None if scheduler is None else [scheduler], before_step=before_step)
        if not run.model.current():
            raise RuntimeError("the swarm re-packed its buffers during a batched run (a structural change of a "
                               "member or swarm.to(...)); the run's optimizer steps the old ones: fit again")
        self.model = run.model
        self.params = [list(run.model.leaves)]  # what flush() rescales
        self.mode, self.head = run.loss_mode, _loss_head(loss_fn)

    def batch(self, x, y, weight, metrics: dict, metric_sums: dict, samples: int, step: bool) -> list[float]:
        opt, model = self.optimizers[0], self.model
        if self.pending == 0:
            opt.zero_grad()
        if self.settings.precision.dtype is None:  # no context manager on the default path
            out, values = batched_losses(self.mode, model, self.loss_fn, self.head, x, y, weight)
        else:
            with self.settings.precision.autocast():
                out, values = batched_losses(self.mode, model, self.loss_fn, self.head, x, y, weight)
        total = values.sum()
        (total if self.window == 1 else total * (1.0 / self.window)).backward()
        if step:
            self._step(0, opt)
        if metrics:
            out = out.detach()
            for name, fn in metrics.items():
                sums = metric_sums[name]
                for i in range(model.size):
                    sums[i] += as_float(fn(out[i], y)) * samples
        self.pending = 0 if step else self.pending + 1
        return values.detach().float().tolist()

    def _step(self, i: int, opt) -> None:
        for hook in self.before_step:
            hook(None, opt)
        settings = self.settings
        grads = [leaf.grad for leaf in self.model.leaves if leaf.grad is not None]
        with torch.no_grad():
            if settings.clip_norm is not None and grads:
                norms = torch.stack([g.float().reshape(len(g), -1).norm(dim=1) for g in grads]).norm(dim=0)
                coef = (settings.clip_norm / (norms + 1e-6)).clamp(max=1.0)
                for g in grads:
                    g.mul_(coef.to(g.dtype).view(-1, *(1,) * (g.dim() - 1)))
            if settings.clip_value is not None:
                for g in grads:
                    g.clamp_(-settings.clip_value, settings.clip_value)
        with self.model.writing():
            opt.step()
        if self.schedulers is not None:
            self.schedulers[0].step()


# ------------------------------------------------------------------ the trainer's side

def member_learning_rates(optimizers: list, size: int) -> list[float]:
    """Each member's learning rate: a batched run's one optimizer's, K times."""
    rates = learning_rates(optimizers)
    return rates * size if len(rates) == 1 and size > 1 else rates


def plateau_values(schedulers: list, monitored: list) -> list:
    """What each end-of-epoch scheduler steps on: a batched run's one scheduler (a
    ``ReduceLROnPlateau``) on the best member's value."""
    if len(schedulers) == 1 and len(monitored) > 1 and is_plateau(schedulers[0]):
        return [min(monitored)]
    return monitored


def batched_checkpoint_entries(run: BatchedRun, optimizer, scheduler) -> dict:
    """A batched run's optimizer and scheduler in a checkpoint's per-member form: the
    K states K sequential member optimizers (and schedulers) would save, so the file
    resumes either kind of run."""
    k = run.model.size
    entries = {"optimizers": member_optimizer_states(optimizer, run.model),
               "optimizer_classes": [class_name(optimizer)] * k}
    if scheduler is not None:
        state = scheduler.state_dict()
        entries["schedulers"] = [state] * k
        entries["scheduler_classes"] = [class_name(scheduler)] * k
    return entries


def batched_checkpoint_view(checkpoint: CheckpointFile, run: BatchedRun, optimizer) -> CheckpointFile:
    """``checkpoint`` (per-member optimizer and scheduler states) as a batched run
    resumes it: one merged optimizer state (see
    :func:`~nytorch_ext.swarm.batched.batched_optimizer_state`) and one scheduler
    state (every member's must be equal). Raises ``ValueError`` naming the file when
    they do not merge; the file's state is not changed."""
    state = dict(checkpoint.state)

    def refuse(message):
        raise ValueError(f"resume_from {checkpoint.path!r}: {message}")

    classes = state.get("optimizer_classes")
    if isinstance(classes, (list, tuple)) and any(c != class_name(optimizer) for c in classes):
        refuse(f"the checkpoint's optimizers are {sorted(set(map(str, classes)))}, this run's is "
               f"{class_name(optimizer)}; resume with the optimizer of the run that wrote the checkpoint")
    try:
        state["optimizers"] = [batched_optimizer_state(optimizer, run.model, state["optimizers"])]
    except ValueError as e:
        refuse(str(e))
    state["optimizer_classes"] = [class_name(optimizer)]
    schedulers = state.get("schedulers")
    if isinstance(schedulers, (list, tuple)) and schedulers:
        if any(s != schedulers[0] for s in schedulers[1:]):
            refuse("the members' schedulers are in different states; a batched run has one scheduler")
        state["schedulers"] = [schedulers[0]]
        names = state.get("scheduler_classes")
        state["scheduler_classes"] = [names[0]] if isinstance(names, (list, tuple)) and names else None
    return CheckpointFile(checkpoint.path, state)
