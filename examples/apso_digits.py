"""APSO + gradient descent on a swarm of ConvNets (the nytorch seed chapter's example).

Twelve ConvNets train by SGD on every batch; every 16 batches a random subset of 6 is
blended toward the subset's best (accelerated particle swarm optimisation,
``W_i <- (1 - alpha) W_i + alpha W_best``), in place, by ``nytorch_ext``'s fused
``Swarm.apso_step``; ``SwarmTrainer`` runs the loop. Like the seed, it prints every
particle's accuracy every 16 batches, here on a validation split carved out of the
training data: the best particle is chosen on that split (lowest validation loss), never
on the test set, and the test set is used once, at the end, for the chosen particle's
and the ensemble's (mean of the particles' softmax probabilities) test accuracy.
``--plot out.png`` draws the loss curves and every particle's validation accuracy over
the batches (needs matplotlib: ``pip install nytorch_ext[plot]``).

Data, offline by default:

- ``--dataset digits`` (default): scikit-learn's bundled 8x8 digits (1797 images, no
  download); the seed's ConvNet is adapted to the 8x8 input (padded convolutions).
  Default settings reach >= 0.90 test accuracy in well under a few minutes on 2 cores.
- ``--dataset mnist --data-dir DIR``: MNIST through torchvision, from DIR; the seed's
  ConvNet as is. Needs torchvision (``pip install torchvision``) and MNIST already in
  DIR; ``--download`` fetches it (nothing is downloaded otherwise). As in the seed, a
  random subset of 256 x 64 training and 16 x 64 test images.

Run: ``python examples/apso_digits.py`` (``--help`` for options).
"""
from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset, TensorDataset

from nytorch_ext import NytoModule, ParticleModule
from nytorch_ext.train import Callback
from nytorch_ext.swarm import Swarm
from nytorch_ext.train import SwarmTrainer, accuracy


class ConvNet(NytoModule):
    """The seed's ConvNet (conv 5x5 -> relu -> maxpool 2 -> conv 3x3 -> relu -> fc ->
    log_softmax) for square ``side``-pixel images: as in the seed for 28x28; smaller
    images get padded convolutions so that the feature map does not vanish."""

    def __init__(self, side: int = 28):
        super().__init__()
        pad1, pad2 = (0, 0) if side >= 16 else (2, 1)
        self.conv1 = nn.Conv2d(1, 10, 5, padding=pad1)
        self.conv2 = nn.Conv2d(10, 20, 3, padding=pad2)
        s = (side + 2 * pad1 - 4) // 2 + 2 * pad2 - 2
        self.fc = nn.Linear(20 * s * s, 10)

    def forward(self, x):
        in_size = x.size(0)
        out = self.conv1(x)
        out = F.relu(out)
        out = F.max_pool2d(out, 2, 2)
        out = self.conv2(out)
        out = F.relu(out)
        out = out.view(in_size, -1)
        out = self.fc(out)
        out = F.log_softmax(out, dim=1)
        return out


def digits_data(test_fraction: float, val_fraction: float, seed: int):
    """scikit-learn's bundled 8x8 digits, scaled to [0, 1] and standardized with the
    training split's mean and std: (train_set, val_set, test_set, side). The validation
    split is ``val_fraction`` of what is left after the test split, both stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    idx_rest, idx_test = train_test_split(range(len(y)), test_size=test_fraction, random_state=seed,
                                          stratify=digits.target)
    idx_train, idx_val = train_test_split(idx_rest, test_size=val_fraction, random_state=seed,
                                          stratify=digits.target[idx_rest])
    mean, std = x[idx_train].mean(), x[idx_train].std()
    sets = [TensorDataset((x[idx] - mean) / std, y[idx]) for idx in (idx_train, idx_val, idx_test)]
    return (*sets, 8)


def mnist_data(data_dir: str, download: bool, train_size: int, test_size: int, val_fraction: float, seed: int):
    """The seed's MNIST subsets, from ``data_dir`` (downloaded only when ``download``),
    with ``val_fraction`` of the training subset held out for validation:
    (train_set, val_set, test_set, side)."""
    try:
        from torchvision import datasets, transforms
    except ImportError:
        sys.exit("--dataset mnist needs torchvision (pip install torchvision); "
                 "or use the default --dataset digits, which needs nothing else")
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    try:
        train = datasets.MNIST(data_dir, train=True, download=download, transform=transform)
        test = datasets.MNIST(data_dir, train=False, download=download, transform=transform)
    except RuntimeError as e:
        sys.exit(f"MNIST is not in {data_dir!r} ({e}); pass --download to fetch it")
    g = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(train), generator=g)[:train_size].tolist()
    n_val = int(len(chosen) * val_fraction)
    test = Subset(test, torch.randperm(len(test), generator=g)[:test_size].tolist())
    return Subset(train, chosen[n_val:]), Subset(train, chosen[:n_val]), test, 28


def create_pool(size: int, side: int) -> Swarm:
    """The seed's create_pool: independently initialized ConvNets (PyTorch's default
    init), made one species with ``clone_from``, as one Swarm."""
    pool = [ParticleModule(ConvNet(side)) for _ in range(size)]
    p0 = pool[0]
    return Swarm([p0] + [p0.clone_from(p) for p in pool[1:]])


class PrintAccuracy(Callback):
    """Every ``every`` batches (and after the first), every particle's accuracy on
    ``loader``, as the seed prints it (``every=0``: not printed); kept in ``batches`` and
    ``accuracy`` for ``--plot``."""

    def __init__(self, loader, every: int, quiet: bool = False):
        self.loader, self.every, self.quiet = loader, every, quiet
        self.count, self.batches, self.accuracy = 0, [], []

    def on_batch_end(self, trainer, batch, losses):
        self.count += 1
        if self.every and (self.count == 1 or self.count % self.every == 0):
            ev = trainer.evaluate(self.loader, {"accuracy": accuracy})
            self.batches.append(self.count - 1)
            self.accuracy.append(ev["accuracy"])
            if not self.quiet:
                row = " ".join(f"[{i}]{a:.2f}" for i, a in enumerate(ev["accuracy"]))
                print(f"batch: {self.count - 1:>3} Accuracy: {row}", flush=True)


def plot_run(history, monitor: PrintAccuracy, path: str) -> None:
    """The loss curves (per batch; per epoch, train and validation) and every particle's
    validation accuracy over the batches, the best one thick, saved to ``path``."""
    from matplotlib.figure import Figure
    from nytorch_ext.train.plotting import member_curves
    figure = Figure(figsize=(15, 3.8), layout="constrained")
    axes = figure.subplots(1, 3)
    history.plot(keys=["batch_loss", "loss"], axes=axes[:2])
    best = [max(range(len(row)), key=row.__getitem__) for row in monitor.accuracy]
    member_curves(axes[2], monitor.batches, monitor.accuracy, best=best, label="validation accuracy")
    axes[2].set(title="validation accuracy", xlabel="batch")
    axes[2].legend(fontsize="small")
    figure.savefig(path)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=["digits", "mnist"], default="digits")
    p.add_argument("--data-dir", default="mnist", help="where MNIST is (--dataset mnist)")
    p.add_argument("--download", action="store_true", help="download MNIST if it is not in --data-dir")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs (default: 8 on digits, 1 on MNIST = the seed's 256 batches)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--pool-size", type=int, default=12, help="particles in the swarm")
    p.add_argument("--swarm-size", type=int, default=None,
                   help="APSO subset size (default: min(6, pool size), the seed's 6 for its pool of 12)")
    p.add_argument("--swarm-interval", type=int, default=16, help="APSO every that many batches (0: never)")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--lr", type=float, default=None, help="SGD learning rate (default: 0.05 on "
                                                          "digits, the seed's 0.01 on MNIST)")
    p.add_argument("--momentum", type=float, default=None,
                   help="SGD momentum (default: 0.5 on digits, the seed's 0 on MNIST)")
    p.add_argument("--print-interval", type=int, default=16, help="0: no per-batch printing")
    p.add_argument("--train-batches", type=int, default=256, help="MNIST: training subset, in batches")
    p.add_argument("--test-batches", type=int, default=16, help="MNIST: test subset, in batches")
    p.add_argument("--test-fraction", type=float, default=0.25, help="digits: test split")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="of the training data, held out for validation (model selection)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads (small models train fastest on one thread; 0: torch's default)")
    p.add_argument("--quiet", action="store_true",
                   help="no per-epoch output (default: a tqdm bar on a terminal, else one line per epoch)")
    p.add_argument("--plot", metavar="PATH", default=None,
                   help="save the loss and validation-accuracy curves there (e.g. out.png; needs matplotlib)")
    return p.parse_args(argv)



def fit_swarm(trainer, args, train_loader, val_loader, monitor, lr, momentum, epochs, subset):
    """The seed's hybrid run: SGD on every member, APSO every ``--swarm-interval`` batches."""
    return trainer.fit(train_loader, val_data=val_loader, epochs=epochs,
                       optimizer=lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum),
                       loss=F.nll_loss, evolve_every=args.swarm_interval, alpha=args.alpha,
                       subset_size=subset, metrics={"accuracy": accuracy},
                       callbacks=[monitor], progress=False if args.quiet else None)

def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    digits = args.dataset == "digits"
    if args.print_interval == 0 and args.plot:
        sys.exit("--plot draws the accuracy measured every --print-interval batches: it needs --print-interval > 0")
    if digits:
        train_set, val_set, test_set, side = digits_data(args.test_fraction, args.val_fraction, args.seed)
    else:
        train_set, val_set, test_set, side = mnist_data(args.data_dir, args.download,
                                                        args.train_batches * args.batch_size,
                                                        args.test_batches * args.batch_size, args.val_fraction,
                                                        args.seed)
    epochs = args.epochs if args.epochs is not None else (8 if digits else 1)
    lr = args.lr if args.lr is not None else (0.05 if digits else 0.01)
    momentum = args.momentum if args.momentum is not None else (0.5 if digits else 0.0)
    subset = args.swarm_size if args.swarm_size is not None else min(6, args.pool_size)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, drop_last=True)
    val_loader = DataLoader(val_set, batch_size=512, shuffle=False)
    test_loader = DataLoader(test_set, batch_size=512, shuffle=False)
    print(f"{args.dataset}: {len(train_set)} training / {len(val_set)} validation / {len(test_set)} test images "
          f"of {side}x{side}; "
          f"{args.pool_size} particles, APSO on {subset} every {args.swarm_interval} batches, "
          f"SGD lr={lr} momentum={momentum}, {epochs} epoch(s)")

    swarm = create_pool(args.pool_size, side)
    trainer = SwarmTrainer(swarm, device=args.device, seed=args.seed)
    started = time.perf_counter()
    monitor = PrintAccuracy(val_loader, args.print_interval)
    history = fit_swarm(trainer, args, train_loader, val_loader, monitor, lr, momentum, epochs, subset)
    seconds = time.perf_counter() - started

    best = trainer.best_index  # lowest validation loss of the last epoch: chosen without the test set
    ev = trainer.evaluate(test_loader, {"accuracy": accuracy}, ensemble=True)
    print("End")
    print("Test accuracy: " + " ".join(f"[{i}]{a:.2f}" for i, a in enumerate(ev["accuracy"])))
    print(f"best particle [{best}] (chosen on validation: accuracy {history.best_val_accuracy[-1]:.4f}) "
          f"test accuracy: {ev['accuracy'][best]:.4f}   ensemble accuracy: {ev.ensemble['accuracy']:.4f}   "
          f"({len(history.batch_loss)} batches, {len(history.evolutions)} APSO steps, "
          f"{seconds:.1f} s on {trainer.device})")
    if args.plot:
        plot_run(history, monitor, args.plot)
        print(f"plot: {args.plot}")
    return {"best": best, "best_accuracy": ev["accuracy"][best], "val_accuracy": history.best_val_accuracy[-1],
            "ensemble_accuracy": ev.ensemble["accuracy"], "accuracy": ev["accuracy"], "seconds": seconds}


if __name__ == "__main__":
    main()
