"""The seed chapters' code, run with only the import changed (nytorch -> nytorch_ext).

The intro's momentum-as-particle-arithmetic loop on Iris (scikit-learn's bundled
copy, no download), and the APSO chapter's ConvModel / swarm_algorithm on synthetic
28x28 images instead of MNIST (the MNIST version belongs to examples/).
"""
from random import choices, seed

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

from nytorch_ext import NytoModule, ParticleModule
from nytorch_ext.particle_module import PMProduct


def test_intro_momentum_on_iris_learns():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split
    import numpy as np

    torch.manual_seed(0)
    iris = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(iris.data, iris.target, test_size=0.2,
                                                        random_state=0)
    x_train = torch.FloatTensor(x_train)
    x_test = torch.FloatTensor(x_test)
    y_train = torch.LongTensor(y_train)
    y_test = torch.LongTensor(y_test)
    BETA = 0.9
    LR = 0.005
    criterion = nn.CrossEntropyLoss()

    def train_module(net: "MyModel", lr: float) -> "MyModel":
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

    class MyModel(NytoModule):
        def __init__(self, in_feat: int, h_size: int, out_feat: int):
            super().__init__()
            self.layer1 = nn.Linear(in_feat, h_size)
            self.layer2 = nn.Linear(h_size, out_feat)

        def forward(self, inpts):
            h_out = F.relu(self.layer1(inpts))
            return self.layer2(h_out)

    net0: MyModel = MyModel(4, 12, 3)
    net1: MyModel = train_module(net0, LR)
    start = eval_module(net1)
    for epoch in range(300):
        momentum: MyModel = BETA * (net1 - net0)
        net1, net0 = train_module(net1, LR) + momentum, net1
    accuracy = eval_module(net1)
    assert isinstance(net1, MyModel)
    assert accuracy >= 0.9 and accuracy > start, (start, accuracy)


class ConvNet(NytoModule):  # the APSO chapter's model
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 5)
        self.conv2 = nn.Conv2d(10, 20, 3)
        self.fc = nn.Linear(20 * 10 * 10, 10)

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


LR = 0.01


class ConvModel:  # verbatim from the chapter
    @classmethod
    def from_product(cls, product, device):
        assert isinstance(product, PMProduct)
        return cls(product.module(), device)

    def __init__(self, particle, device):
        assert isinstance(particle, ParticleModule)
        self.device = device
        self.particle = particle
        self.optimizer = optim.SGD(self.particle.parameters(), lr=LR)
        self.particle.to(self.device)

    def product(self):
        return self.particle.product()

    def train(self, data, target):
        data, target = data.to(self.device), target.to(self.device)
        self.particle.train()
        self.optimizer.zero_grad()
        loss = F.nll_loss(self.particle(data), target)
        loss.backward()
        self.optimizer.step()
        return loss.item()


def create_pool(size, device):  # verbatim
    assert size >= 2
    pool = [ParticleModule(ConvNet()) for _ in range(size)]
    p0 = pool[0]
    return [ConvModel(p0.clone_from(p), device) for p in pool[1:]] + [ConvModel(p0, device)]


def swarm_algorithm(pool, swarm_size, loss_list, alpha):  # verbatim
    assert 0 < swarm_size <= len(pool) == len(loss_list)
    assert 1 > alpha > 0
    idx_list = choices(list(range(len(pool))), k=swarm_size)
    idx_loss_list = [(idx, loss_list[idx]) for idx in idx_list]
    idx_loss_list = sorted(idx_loss_list, key=lambda idx_loss: idx_loss[1])
    best_seed_idx, _ = idx_loss_list[0]
    for i, (idx, loss) in enumerate(idx_loss_list):
        if idx == best_seed_idx: continue
        seed0 = pool[best_seed_idx].product()
        seed1 = pool[idx].product()
        new_product = alpha*seed0 + (1-alpha)*seed1
        pool[idx] = ConvModel.from_product(new_product, pool[idx].device)


def test_apso_chapter_pool_trains_and_blends():
    torch.manual_seed(0)
    seed(0)
    pool = create_pool(4, torch.device("cpu"))
    data = torch.randn(16, 1, 28, 28)
    target = torch.randint(0, 10, (16,))
    for batch in range(4):
        losses = [model.train(data, target) for model in pool]
        if (batch + 1) % 2 == 0:
            swarm_algorithm(pool, 3, losses, 0.5)
            assert all(isinstance(m.particle, ParticleModule) for m in pool)
    # every particle still trains after the swarm step (fresh optimizers, views intact)
    losses = [model.train(data, target) for model in pool]
    assert all(torch.isfinite(torch.tensor(losses)))
    # the blend is the chapter's formula: check one explicitly
    a, b = pool[0], pool[1]
    expected = [0.5 * p + 0.5 * q for p, q in zip(a.particle.parameters(), b.particle.parameters())]
    mixed = ConvModel.from_product(0.5 * a.product() + 0.5 * b.product(), a.device)
    for got, want in zip(mixed.particle.parameters(), expected):
        torch.testing.assert_close(got, want)
