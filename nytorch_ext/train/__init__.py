"""Training: SwarmTrainer (gradient descent plus APSO), callbacks, history, devices."""
from .callbacks import Callback, Checkpoint, EarlyStopping, ProgressBar, tqdm_available
from .device import cuda_free_memory, resolve_device
from .history import Evaluation, History
from .trainer import CHECKPOINT_FORMAT, SwarmTrainer, accuracy, rng_state, set_rng_state

__all__ = ["SwarmTrainer", "accuracy", "rng_state", "set_rng_state", "CHECKPOINT_FORMAT",
           "Callback", "ProgressBar", "EarlyStopping", "Checkpoint", "tqdm_available",
           "History", "Evaluation", "resolve_device", "cuda_free_memory"]
