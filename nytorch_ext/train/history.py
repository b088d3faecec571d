"""What a swarm's training run and evaluations record: :class:`History`, :class:`Evaluation`.

Everything is plain Python (lists of floats and ints), so ``to_dict()`` output can be
``json.dump``-ed, and a History survives a checkpoint unchanged.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

__all__ = ["History", "Evaluation"]


def _argmin(values) -> int:
    return min(range(len(values)), key=values.__getitem__)


class History:
    """The record of one :meth:`SwarmTrainer.fit` run over K particles.

    Per batch:

    - ``batch_loss[b][k]``: particle k's training loss on the run's b-th batch (the
      loss of the forward pass that its gradient step used).
    - ``evolutions``: one dict per APSO step: ``batch`` (the run's batch count when it
      happened), ``indices`` (the drawn subset), ``best`` (the member the others were
      blended toward).

    Per epoch, ``records[e]`` is a dict: ``epoch`` (0-based), ``batches``, ``best`` (the
    best particle: lowest ``val_loss`` when there is validation data, else lowest
    ``train_loss``), ``seconds``, and for every logged quantity a list over the K
    particles: ``train_loss``, ``train_<metric>`` (metric of the training forward
    passes, averaged over the epoch's samples), ``val_loss``, ``val_<metric>``.

    Attribute access reads columns: ``history.val_loss`` is the list over epochs of
    per-particle lists, ``history.best_val_loss`` the list over epochs of the best
    particle's value (likewise for every key), ``history.best`` the best particle of
    every epoch. ``len(history)`` is the number of epochs recorded.

    ``stop_reason``: None, or why the run stopped before its last epoch (set by
    ``trainer.stop(reason)``, e.g. by EarlyStopping).

    ``restored_epoch``: None while the swarm holds the weights of the last recorded
    epoch; the epoch whose weights it holds after ``EarlyStopping(restore_best=True)``
    loaded them (reset by the next recorded epoch). ``current_best`` is the best
    particle of those weights: ``records[restored_epoch]["best"]``, else the last
    epoch's (what ``SwarmTrainer.best_index`` and ``predict(use="best")`` use).
    """

    def __init__(self, num_particles: int) -> None:
        self.num_particles = int(num_particles)
        self.batch_loss: list[list[float]] = []
        self.evolutions: list[dict] = []
        self.records: list[dict] = []
        self.restored_epoch: int | None = None
        self.stop_reason: str | None = None

    # ---------------------------------------------------------- recording

    def add_batch(self, losses: list[float]) -> None:
        self.batch_loss.append(losses)

    def add_evolution(self, batch: int, indices: list, best: int) -> None:
        self.evolutions.append({"batch": int(batch), "indices": list(indices), "best": int(best)})

    def add_epoch(self, record: dict) -> None:
        self.records.append(record)
        self.restored_epoch = None  # the swarm now holds this epoch's weights

    def mark_restored(self, epoch: int) -> None:
        """The swarm's weights were reset to those of ``epoch`` (0-based, recorded)."""
        self._record_index(epoch)
        self.restored_epoch = int(epoch)

    def _record_index(self, epoch: int) -> int:
        for i in range(len(self.records) - 1, -1, -1):
            if self.records[i].get("epoch", i) == epoch:
                return i
        raise ValueError(f"epoch {epoch} is not recorded in this History "
                         f"(epochs {[r.get('epoch') for r in self.records]})")

    @property
    def current_best(self) -> int:
        """The best particle of the weights the swarm holds (see the class docstring)."""
        if not self.records:
            raise ValueError("no epoch recorded yet, so there is no best particle")
        if self.restored_epoch is not None:
            return self.records[self._record_index(self.restored_epoch)]["best"]
        return self.records[-1]["best"]

    # ---------------------------------------------------------- reading

    def __len__(self) -> int:
        return len(self.records)

    @property
    def keys(self) -> list[str]:
        """The per-particle quantities logged every epoch (``train_loss``, ``val_loss``, ...)."""
        if not self.records:
            return []
        return [k for k, v in self.records[-1].items() if isinstance(v, list)]

    @property
    def best(self) -> list[int]:
        return [r["best"] for r in self.records]

    def column(self, key: str) -> list:
        """``key`` over epochs: ``"val_loss"`` -> per-particle lists; ``"best_val_loss"``
        -> the best particle's value per epoch; ``"epoch"``, ``"seconds"``, ... as logged."""
        if key.startswith("best_") and key[5:] and all(key[5:] in r for r in self.records):
            return [r[key[5:]][r["best"]] for r in self.records]
        if self.records and not all(key in r for r in self.records):
            raise KeyError(key)
        return [r[key] for r in self.records]

    def last(self, key: str):
        """The latest epoch's value of ``key`` (see :meth:`column`)."""
        if not self.records:
            raise KeyError(f"{key}: no epoch recorded yet")
        return self.column(key)[-1]

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("num_particles", "batch_loss", "evolutions", "records",
                                             "restored_epoch", "stop_reason"):
            raise AttributeError(name)
        try:
            return self.column(name)
        except KeyError:
            raise AttributeError(f"History has no {name!r}; logged: {self.keys}") from None

    @property
    def micro_train_loss(self) -> list[float]:
        """Per batch, the lowest training loss over the particles (PyBlaze's name)."""
        return [min(row) for row in self.batch_loss]

    # ---------------------------------------------------------- (de)serializing

    def to_dict(self) -> dict:
        return {"num_particles": self.num_particles, "batch_loss": copy.deepcopy(self.batch_loss),
                "evolutions": copy.deepcopy(self.evolutions), "records": copy.deepcopy(self.records),
                "restored_epoch": self.restored_epoch, "stop_reason": self.stop_reason}

    @classmethod
    def from_dict(cls, state: dict) -> "History":
        """The History of ``to_dict()`` output (checked: ``ValueError`` / ``TypeError``
        for anything else, before a History is made)."""
        if not isinstance(state, dict):
            raise TypeError(f"History.from_dict takes a dict, got {type(state).__name__}")
        missing = [k for k in ("num_particles", "batch_loss", "evolutions", "records") if k not in state]
        if missing:
            raise ValueError(f"not a History.to_dict(): missing {missing}")
        if not all(isinstance(state[k], list) for k in ("batch_loss", "evolutions", "records")) \
                or not all(isinstance(r, dict) and "best" in r for r in state["records"]):
            raise ValueError("not a History.to_dict(): batch_loss, evolutions and records must be lists "
                             "(records of dicts with a 'best' entry)")
        h = cls(state["num_particles"])
        h.batch_loss = copy.deepcopy(state["batch_loss"])
        h.evolutions = copy.deepcopy(state["evolutions"])
        h.records = copy.deepcopy(state["records"])
        restored = state.get("restored_epoch")  # absent in older checkpoints
        if restored is not None:
            h.mark_restored(restored)
        reason = state.get("stop_reason")  # absent in older checkpoints
        h.stop_reason = None if reason is None else str(reason)
        return h

    def plot(self, keys=None, path=None, *, axes=None):
        """Training curves with matplotlib (``pip install nytorch_ext[plot]``): one panel
        per key, every member as a thin line and the best member (per epoch, as
        ``best_<key>``) as a thick one. See :func:`nytorch_ext.train.plotting.plot_history`
        for ``keys`` (default: the loss and every metric, train and validation in one
        panel), ``path`` (save the figure there) and ``axes``. Returns the Figure."""
        from .plotting import plot_history
        return plot_history(self, keys, path, axes=axes)

    def __repr__(self) -> str:
        return (f"History({len(self)} epoch(s), {len(self.batch_loss)} batch(es), "
                f"{len(self.evolutions)} APSO step(s), {self.num_particles} particles; keys {self.keys})")


@dataclass
class Evaluation:
    """What :meth:`SwarmTrainer.evaluate` measured on one data set.

    ``loss[k]`` and ``metrics[name][k]``: particle k's sample-averaged loss and metrics;
    ``best``: the particle with the lowest loss; ``ensemble``: when asked for, the loss
    and metrics of the ensemble prediction (the mean of the particles' softmax
    probabilities; its log is given to the loss and the metrics), else None.
    Metric names are also attributes and keys: ``evaluation.accuracy`` and
    ``evaluation["accuracy"]`` are the per-particle list, ``evaluation.best_accuracy`` /
    ``evaluation["best_accuracy"]`` the best particle's value; ``evaluation["loss"]``,
    ``["best"]``, ``["ensemble"]``, ``["samples"]`` are the fields; ``keys()`` lists them all."""
    loss: list
    metrics: dict = field(default_factory=dict)
    best: int = 0
    ensemble: dict | None = None
    samples: int = 0

    @property
    def best_loss(self) -> float:
        return self.loss[self.best]

    def __getattr__(self, name: str):
        metrics = self.__dict__.get("metrics", {})
        if name in metrics:
            return metrics[name]
        if name.startswith("best_") and name[5:] in metrics:
            return metrics[name[5:]][self.best]
        raise AttributeError(f"Evaluation has no {name!r}; metrics: {list(metrics)}")

    def keys(self) -> list[str]:
        metrics = list(self.metrics)
        return ["loss", "best_loss", *metrics, *(f"best_{m}" for m in metrics), "best", "ensemble", "samples"]

    def __getitem__(self, key: str):
        if not isinstance(key, str) or key not in self.keys():
            raise KeyError(f"Evaluation has no {key!r}; keys: {self.keys()}")
        return getattr(self, key)

    def __contains__(self, key) -> bool:
        return key in self.keys()

    def to_dict(self) -> dict:
        return {"loss": list(self.loss), "metrics": copy.deepcopy(self.metrics), "best": self.best,
                "ensemble": copy.deepcopy(self.ensemble), "samples": self.samples}


def best_of(losses) -> int:
    """The index of the lowest loss (the first among ties; NaN counts as +inf)."""
    return _argmin([float("inf") if v != v else v for v in losses])
