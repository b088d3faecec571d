"""Training: SwarmTrainer (gradient descent plus APSO), callbacks, history, devices.

Modules: ``trainer`` (the loop and the trainer's state), ``options`` (fit's arguments),
``batches``, ``step`` (the gradient step of every member: accumulation, clipping, the
optimizer-step hook), ``precision`` (autocast, GradScaler), ``schedulers``,
``inference`` (evaluate and predict), ``metrics``, ``checkpoints`` and ``rng`` (saving
and resuming a run), ``callbacks`` (progress, early stopping, checkpoints, loggers),
``history``, ``plotting`` (History.plot) and ``device``.
"""
from .batches import BatchFormat
from .callbacks import (Callback, Checkpoint, CSVLogger, EarlyStopping, ProgressBar, TensorBoardLogger,
                        tqdm_available)
from .checkpoints import CHECKPOINT_FORMAT
from .device import cuda_free_memory, resolve_device
from .history import Evaluation, History
from .metrics import accuracy
from .rng import rng_state, set_rng_state
from .trainer import SwarmTrainer

__all__ = ["SwarmTrainer", "accuracy", "rng_state", "set_rng_state", "CHECKPOINT_FORMAT",
           "Callback", "ProgressBar", "EarlyStopping", "Checkpoint", "CSVLogger", "TensorBoardLogger",
           "tqdm_available", "BatchFormat",
           "History", "Evaluation", "resolve_device", "cuda_free_memory"]
