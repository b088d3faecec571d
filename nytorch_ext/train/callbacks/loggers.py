"""Loggers: every epoch's per-member values to a CSV file or to TensorBoard."""
from __future__ import annotations

import csv
import os

from .base import Callback
from ..extras import require
from .paths import check_writable, file_path


def _per_member_keys(record: dict) -> list[str]:
    return [k for k, v in record.items() if isinstance(v, list)]


class CSVLogger(Callback):
    """Writes every epoch to the CSV file ``path``, one row per member (long format, as
    ``pandas.read_csv`` wants it): ``epoch`` (0-based, as in the History), ``member``,
    ``is_best`` (1 for the epoch's best member), every logged key (``train_loss``,
    ``val_loss``, ``val_<metric>``, ``lr``, ...) and ``seconds``.

    The file is rewritten when ``fit`` starts, from the run's History: a new run starts
    with the header only, a resumed run with the epochs its checkpoint holds, so the
    file always matches the run. Each epoch's rows are appended and flushed as it ends.
    ``fit`` checks that the file can be written before training."""

    def __init__(self, path) -> None:
        self.path = file_path(path, "path")
        self.fields: list[str] = []

    def check_fit(self, trainer, *, log_keys: list, epochs: int) -> None:
        check_writable(self.path, "CSVLogger path")

    def on_fit_start(self, trainer) -> None:
        self.fields = ["epoch", "member", "is_best", *trainer.log_keys, "seconds"]
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, self.fields, extrasaction="ignore")
            writer.writeheader()
            for record in trainer.history.records:
                writer.writerows(self.rows(record))

    def rows(self, record: dict) -> list[dict]:
        """The rows of one epoch's record."""
        keys = _per_member_keys(record)
        rows = []
        for i in range(len(record[keys[0]]) if keys else 0):
            row = {"epoch": record.get("epoch"), "member": i, "is_best": int(i == record.get("best")),
                   "seconds": record.get("seconds")}
            row.update((k, record[k][i]) for k in keys)
            rows.append(row)
        return rows

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerows(self.rows(logs))


class TensorBoardLogger(Callback):
    """Writes every epoch's values to TensorBoard event files in ``log_dir``, with the
    epoch (0-based) as the step: ``<key>/best`` (the epoch's best member) and
    ``<key>/member_<i>`` for every logged key. Needs tensorboard
    (``pip install nytorch_ext[tensorboard]``): without it, the constructor raises an
    ImportError that says so. A resumed run purges the events after its checkpoint's
    epoch, so the curves have no duplicates."""

    def __init__(self, log_dir, **writer_kwargs) -> None:
        self._writer_class = require("torch.utils.tensorboard", "SummaryWriter", "TensorBoardLogger",
                                     "tensorboard", "tensorboard")
        self.log_dir = file_path(log_dir, "log_dir")
        self.writer_kwargs = writer_kwargs
        self.writer = None

    def on_fit_start(self, trainer) -> None:
        done = len(trainer.history.records)
        self.writer = self._writer_class(self.log_dir, purge_step=done or None, **self.writer_kwargs)

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        if self.writer is None:
            return
        best = logs["best"]
        for key in _per_member_keys(logs):
            values = logs[key]
            self.writer.add_scalar(f"{key}/best", values[best], epoch)
            for i, v in enumerate(values):
                self.writer.add_scalar(f"{key}/member_{i}", v, epoch)
        self.writer.flush()

    def on_fit_end(self, trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
