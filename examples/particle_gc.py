"""ParticleModule frees particles promptly (the nytorch seed's ParticleModule chapter).

A NytoModule and its particle kernel reference each other, so a particle made by
arithmetic and then dropped (``net = 0.5 * net + 10`` in a loop) lingers until
Python's cycle collector runs. ``ParticleModule`` clears the modules' references to
the kernel, so plain reference counting frees each particle as soon as it is dropped.

This runs the chapter's experiment twice, with the chapter's code and only the import
changed to ``nytorch_ext``: its CNN as a bare NytoModule, then wrapped by a
ParticleModule subclass (with the chapter's ``MyPMProduct``). Each particle prints
``init cnn=N`` when made and ``delete cnn=N`` when freed. By default the cycle
collector is switched off during the loops, so only reference counting frees
anything and the output is the same on every run; ``--gc`` leaves it on, as in the
chapter's printed output (where it then runs at times of its own choosing).

Run: ``python examples/particle_gc.py`` (``--help`` for options). No data, no download.
"""
from __future__ import annotations

import argparse
import gc

import torch.nn as nn

import nytorch_ext as nyto
from nytorch_ext.mtype import ROOT_MODULE_ID
from nytorch_ext.particle_module import ParticleModule, PMProduct


class Tracker:
    """Numbers particles as they are made and records which are alive."""

    def __init__(self, verbose: bool = True):
        self.counter = 0
        self.alive: set[int] = set()
        self.peak = 0
        self.verbose = verbose

    def init(self) -> int:
        self.counter += 1
        self.alive.add(self.counter)
        self.peak = max(self.peak, len(self.alive))
        if self.verbose:
            print(f"init cnn={self.counter}")
        return self.counter

    def delete(self, module_id: int) -> None:
        self.alive.discard(module_id)
        if self.verbose:
            print(f"delete cnn={module_id}")


TRACKER = Tracker()


def cnn_layers(module: nn.Module) -> None:
    """The chapter's CNN layers (MNIST-sized)."""
    module.conv1 = nn.Sequential(nn.Conv2d(in_channels=1, out_channels=16, kernel_size=5, stride=1, padding=2),
                                 nn.ReLU(), nn.MaxPool2d(kernel_size=2))
    module.conv2 = nn.Sequential(nn.Conv2d(16, 32, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(2))
    module.output_layer = nn.Linear(32 * 7 * 7, 10)


def cnn_forward(module: nn.Module, x):
    x = module.conv1(x)
    x = module.conv2(x)
    x = x.view(x.size(0), -1)
    output = module.output_layer(x)
    return output, x


# ------------------------------------------------------------------ without ParticleModule

class CNN(nyto.NytoModule):
    """The chapter's first CNN: a bare NytoModule that counts its instances."""

    def __init__(self):
        super().__init__()
        cnn_layers(self)
        self.init()

    def __del__(self):
        TRACKER.delete(self.module_id)

    def __add__(self, *args, **kwargs):
        new_cnn = super().__add__(*args, **kwargs)
        new_cnn.init()
        return new_cnn

    def __mul__(self, *args, **kwargs):
        new_cnn = super().__mul__(*args, **kwargs)
        new_cnn.init()
        return new_cnn

    def init(self):
        self.module_id = TRACKER.init()

    def forward(self, x):
        return cnn_forward(self, x)


# ------------------------------------------------------------------ with ParticleModule

class PlainCNN(nyto.NytoModule):
    """The chapter's second CNN: no counting of its own (the ParticleModule counts)."""

    def __init__(self):
        super().__init__()
        cnn_layers(self)

    def forward(self, x):
        return cnn_forward(self, x)


class MyPMProduct(PMProduct):
    @classmethod
    def from_ParamProduct(cls, product) -> PMProduct:
        return MyPMProduct(product.kernel, product.module_id, product.params)

    def particle(self) -> "MyParticleModule":
        return MyParticleModule(self.product.module())


class MyParticleModule(ParticleModule):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.module_id = TRACKER.init()

    def __del__(self):
        TRACKER.delete(self.module_id)

    def product(self) -> MyPMProduct:
        return MyPMProduct(self.particle_kernel, ROOT_MODULE_ID, self.particle_kernel.data.params)


# ------------------------------------------------------------------ the experiment

def particle_operation_loop(make, iterations: int) -> None:
    net = make()
    for _ in range(iterations):
        net = 0.5 * net + 10


def experiment(title: str, make, iterations: int, keep_gc: bool) -> dict:
    """Run the loop; report the peak number of live particles, how many were still
    alive when the loop's function returned (before any cycle collection), and how
    many a full collection then freed."""
    global TRACKER
    verbose = TRACKER.verbose
    TRACKER = Tracker(verbose)
    print(f"--- {title}")
    gc.collect()
    was_enabled = gc.isenabled()
    if not keep_gc:
        gc.disable()
    try:
        particle_operation_loop(make, iterations)
        lingering = len(TRACKER.alive)
    finally:
        if was_enabled:
            gc.enable()
    gc.collect()
    result = {"made": TRACKER.counter, "peak_alive": TRACKER.peak, "alive_after_loop": lingering,
              "alive_after_collect": len(TRACKER.alive)}
    print(f"made {result['made']} particles; at most {result['peak_alive']} alive at once; "
          f"{result['alive_after_loop']} still alive when the loop returned"
          + ("" if keep_gc else " (reference counting only)")
          + f"; {result['alive_after_collect']} after gc.collect()")
    return result


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--iterations", type=int, default=10, help="loop iterations (the chapter's 10)")
    p.add_argument("--gc", action="store_true", help="leave the cycle collector on during the loops")
    p.add_argument("--quiet", action="store_true", help="print only the summaries, not every init/delete")
    args = p.parse_args(argv)
    TRACKER.verbose = not args.quiet
    bare = experiment("NytoModule (no ParticleModule)", CNN, args.iterations, args.gc)
    wrapped = experiment("ParticleModule", lambda: MyParticleModule(PlainCNN()), args.iterations, args.gc)
    return {"nytomodule": bare, "particle_module": wrapped}


if __name__ == "__main__":
    main()
