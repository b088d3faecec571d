"""The APSO + gradient descent example (``apso_digits.py``) on a swarm split across processes.

Run with torchrun (offline, on scikit-learn's bundled digits)::

    torchrun --standalone --nproc_per_node=2 examples/apso_digits_distributed.py

Each process owns a contiguous block of the 12 ConvNets (6 each with two processes) and
trains them by SGD on every batch, with no communication; every 16 batches the APSO
step gathers the 12 losses, every process draws the same subset of 6 and finds the same
best, the best's owner broadcasts its parameters (one flat row), and every process
blends its own drawn members toward it. The result is bit-identical to the one-process
run with the same seed (on the CPU, with the same thread count): ``python
examples/apso_digits_distributed.py`` runs it in one process. Progress is printed by
rank 0 only; the History, the evaluation and the test accuracy are the whole swarm's on
every rank. All of ``apso_digits.py``'s options apply (``--help``), plus ``--timeout``
(seconds a collective waits for a peer before failing).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import apso_digits  # noqa: E402  (the one-process example: model, data, printing)

from nytorch_ext import distributed  # noqa: E402
from nytorch_ext.train import SwarmTrainer, accuracy  # noqa: E402


def main(argv=None) -> dict:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--timeout", type=float, default=120.0,
                       help="seconds a collective waits for its peers before raising")
    ns, rest = extra.parse_known_args(argv)
    args = apso_digits.parse_args(rest)
    if args.dataset != "digits":
        sys.exit("the distributed example runs on --dataset digits (offline)")
    if args.threads:
        torch.set_num_threads(args.threads)
    # under torchrun: the process group from its environment; started by hand: one process
    world = distributed.init_process_group(timeout=ns.timeout) if "RANK" in os.environ else distributed.LocalWorld()
    say = print if world.is_writer else (lambda *a, **k: None)

    torch.manual_seed(args.seed)  # the same data, swarm and generator on every rank
    train_set, val_set, test_set, side = apso_digits.digits_data(args.test_fraction, args.val_fraction, args.seed)
    epochs = args.epochs if args.epochs is not None else 8
    lr = args.lr if args.lr is not None else 0.05
    momentum = args.momentum if args.momentum is not None else 0.5
    subset = args.swarm_size if args.swarm_size is not None else min(6, args.pool_size)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=True)
    val_loader = DataLoader(val_set, batch_size=512, shuffle=False)
    test_loader = DataLoader(test_set, batch_size=512, shuffle=False)

    swarm = distributed.shard(apso_digits.create_pool(args.pool_size, side), world)
    block = swarm.block
    say(f"digits: {len(train_set)} training / {len(val_set)} validation / {len(test_set)} test images; "
        f"{args.pool_size} particles on {world.size} process(es) (rank 0 owns {block.start}..{block.stop - 1}), "
        f"APSO on {subset} every {args.swarm_interval} batches, SGD lr={lr} momentum={momentum}, {epochs} epoch(s)",
        flush=True)
    trainer = SwarmTrainer(swarm, device=args.device, seed=args.seed)
    monitor = apso_digits.PrintAccuracy(val_loader, args.print_interval, quiet=not world.is_writer)
    started = time.perf_counter()
    history = apso_digits.fit_swarm(trainer, args, train_loader, val_loader, monitor, lr, momentum, epochs,
                                    subset)
    seconds = time.perf_counter() - started

    best = trainer.best_index
    ev = trainer.evaluate(test_loader, {"accuracy": accuracy}, ensemble=True)  # the whole swarm's, every rank
    say("End")
    say("Test accuracy: " + " ".join(f"[{i}]{a:.2f}" for i, a in enumerate(ev["accuracy"])))
    say(f"best particle [{best}] (chosen on validation: accuracy {history.best_val_accuracy[-1]:.4f}) "
        f"test accuracy: {ev['accuracy'][best]:.4f}   ensemble accuracy: {ev.ensemble['accuracy']:.4f}   "
        f"({len(history.batch_loss)} batches, {len(history.evolutions)} APSO steps, {seconds:.1f} s, "
        f"{world.size} process(es))", flush=True)
    result = {"best": best, "best_accuracy": ev["accuracy"][best], "ensemble_accuracy": ev.ensemble["accuracy"],
              "accuracy": ev["accuracy"], "seconds": seconds, "world_size": world.size}
    if world.size > 1:
        torch.distributed.destroy_process_group()
    return result


if __name__ == "__main__":
    main()
