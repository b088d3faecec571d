"""Callbacks for :class:`nytorch_ext.train.SwarmTrainer`.

A callback is any object with some of these methods (all optional; subclass
:class:`Callback` to get no-op defaults):

==================================================  ==========================================
``on_fit_start(trainer)``                           before the first batch (arguments checked)
``on_epoch_start(trainer, epoch)``                  ``epoch`` is 0-based
``on_batch_end(trainer, batch, losses)``            after every member's gradient step;
                                                    ``batch``: index within the epoch,
                                                    ``losses``: one float per member
``on_before_optimizer_step(trainer, i, optimizer)``  before member ``i``'s optimizer step:
                                                    gradients accumulated and (fp16)
                                                    unscaled, not yet clipped
``on_evolve(trainer, result)``                      after an APSO step (an ``ApsoResult``)
``on_epoch_end(trainer, epoch, logs)``              after validation; ``logs`` is the epoch's
                                                    ``History.records`` entry
``on_fit_end(trainer)``                             after the last epoch (also after a stop)
``state_dict()`` / ``load_state_dict(state)``       saved in / restored from checkpoints
``check_fit(trainer, log_keys=, epochs=)``          before ``fit`` changes anything (the
                                                    swarm, the trainer, a checkpoint to
                                                    resume from): raise to refuse the run
``check_state_dict(state, trainer)``                on resume, before anything is loaded:
                                                    raise unless ``load_state_dict(state)``
                                                    would succeed
==================================================  ==========================================

Calling ``trainer.stop(reason)`` (or setting ``trainer.stop_training = True``) in any
hook ends the run: after the current batch (the epoch is then closed and logged as it
stands) or after the current epoch; the reason is kept in ``history.stop_reason`` and
printed by the default output.

Callbacks run in the order given, except that a callback's ``order`` attribute (default
0) sorts them: :class:`Checkpoint` has order 100, so it saves after every other
callback's ``on_epoch_end`` (an early-stopping decision made in that epoch is saved too).
On resume, each saved callback state goes to the callback of the same class and the same
rank among the callbacks of that class (the first EarlyStopping's to the first
EarlyStopping, ...).

Modules: ``base`` (:class:`Callback`), ``progress`` (:class:`ProgressBar`),
``early_stopping`` (:class:`EarlyStopping`), ``checkpoint`` (:class:`Checkpoint`),
``loggers`` (:class:`CSVLogger`, :class:`TensorBoardLogger`) and ``paths`` (checking
that a file can be written).
"""
from .base import Callback
from .checkpoint import Checkpoint
from .early_stopping import EarlyStopping
from .loggers import CSVLogger, TensorBoardLogger
from .progress import ProgressBar, tqdm_available

__all__ = ["Callback", "ProgressBar", "EarlyStopping", "Checkpoint", "CSVLogger", "TensorBoardLogger",
           "tqdm_available"]
