"""Momentum as model arithmetic on Iris (the nytorch seed introduction's example).

Momentum written as particle arithmetic: each step is plain gradient descent on a
clone of the network plus ``beta * (W_{t-1} - W_{t-2})``::

    net1, net0 = train_module(net1, LR) + BETA * (net1 - net0), net1

This is the introduction's code with only the import changed to ``nytorch_ext``
(where the momentum sum runs as one fused pass per parameter group). ``--fused`` runs
the same update with the library operation ``nytorch_ext.swarm.momentum_step``, which
builds ``w_new + beta*(w_prev - w_prev2)`` as one lazy expression (one pass, one new
particle). Iris comes bundled with scikit-learn: no download.

Run: ``python examples/momentum_iris.py`` (``--help`` for options).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as f

from nytorch_ext import NytoModule
from nytorch_ext.swarm import momentum_step


class MyModel(NytoModule):
    def __init__(self, in_feat: int, h_size: int, out_feat: int):
        super().__init__()
        self.layer1 = nn.Linear(in_feat, h_size)
        self.layer2 = nn.Linear(h_size, out_feat)

    def forward(self, inpts):
        h_out = f.relu(self.layer1(inpts))
        return self.layer2(h_out)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--epochs", type=int, default=300,
                   help="training steps (the introduction printed 100; 300 reaches ~1.0 test accuracy)")
    p.add_argument("--beta", type=float, default=0.9)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--hidden", type=int, default=12)
    p.add_argument("--print-every", type=int, default=25)
    p.add_argument("--fused", action="store_true", help="use nytorch_ext.swarm.momentum_step")
    p.add_argument("--seed", type=int, default=0, help="torch seed and train/test split")
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads (a model this small is fastest on one; 0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from sklearn.datasets import load_iris
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split

    torch.manual_seed(args.seed)
    # load Iris dataset
    iris = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(iris.data, iris.target, test_size=0.2,
                                                        random_state=args.seed)
    x_train = torch.FloatTensor(x_train)
    x_test = torch.FloatTensor(x_test)
    y_train = torch.LongTensor(y_train)
    y_test = torch.LongTensor(y_test)
    criterion = nn.CrossEntropyLoss()

    def train_module(net: MyModel, lr: float) -> MyModel:
        new_net = net.clone()
        optimizer = torch.optim.SGD(new_net.parameters(), lr=lr)
        optimizer.zero_grad()
        loss = criterion(new_net(x_train), y_train)
        loss.backward()
        optimizer.step()
        return new_net

    @torch.no_grad()
    def eval_module(net: nn.Module) -> np.float64:
        net.eval()
        _, predicted = torch.max(net(x_test), 1)
        net.train()
        return accuracy_score(y_test, predicted)

    # init network
    net0: MyModel = MyModel(4, args.hidden, 3)
    net1: MyModel = train_module(net0, args.lr)
    start = eval_module(net1)
    # training
    for epoch in range(args.epochs):
        if args.fused:
            net1, net0 = momentum_step(train_module(net1, args.lr), net1, net0, args.beta), net1
        else:
            momentum: MyModel = args.beta * (net1 - net0)
            net1, net0 = train_module(net1, args.lr) + momentum, net1
        if args.print_every and (epoch + 1) % args.print_every == 0:
            accuracy = eval_module(net1)
            print(f"{epoch=} acc={accuracy:.2f}")
    accuracy = eval_module(net1)
    print(f"test accuracy: {start:.2f} after the first step, {accuracy:.2f} after {args.epochs} steps"
          + (" (momentum_step)" if args.fused else ""))
    return {"start_accuracy": float(start), "accuracy": float(accuracy)}


if __name__ == "__main__":
    main()
