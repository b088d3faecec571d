"""Random number generator states: what a checkpoint saves so a resumed run repeats.

torch (CPU and, when initialized, CUDA), Python ``random``, NumPy, and the generators
a data loader draws its order from.
"""
from __future__ import annotations

import random

import torch

__all__ = ["rng_state", "set_rng_state", "loader_generators", "check_rng_state", "persistent_workers"]

PERSISTENT_WORKERS_WARNING = (
    "resuming with DataLoader(persistent_workers=True): the resumed run is not bit-for-bit the "
    "uninterrupted one. Persistent workers draw their seeds once, when they start, and keep their "
    "random states between epochs, so neither can be restored; the resumed run draws them again "
    "(the shuffle order, dropout and the workers' random augmentations differ from there on). "
    "For an exact resume use persistent_workers=False.")


def persistent_workers(loader) -> bool:
    """Whether ``loader`` keeps worker processes between epochs (whose random states a
    checkpoint cannot hold)."""
    return bool(getattr(loader, "persistent_workers", False)) and getattr(loader, "num_workers", 0) > 0


def loader_generators(loader) -> list:
    """The torch.Generators a loader draws its order from (its own, its samplers')."""
    found, seen = [], set()
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
                getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        g = getattr(obj, "generator", None)
        if isinstance(g, torch.Generator) and id(g) not in seen:
            seen.add(id(g))
            found.append(g)
    return found


def rng_state(loader=None) -> dict:
    """torch (CPU and, when initialized, CUDA), Python ``random`` and NumPy RNG states,
    plus the states of ``loader``'s own generators."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "loader": [g.get_state() for g in loader_generators(loader)] if loader is not None else []}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np
        state["numpy"] = np.random.get_state()
    except ImportError:
        pass
    return state


def set_rng_state(state: dict, loader=None) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np
        np.random.set_state(state["numpy"])
    if loader is not None:
        generators = loader_generators(loader)
        if len(generators) != len(state["loader"]):
            raise ValueError(f"resume: the train loader has {len(generators)} generator(s), the "
                             f"checkpoint's had {len(state['loader'])}; resume with the same kind of loader")
        for g, s in zip(generators, state["loader"]):
            g.set_state(s)


def check_rng_state(rng, loader, refuse) -> None:
    """``set_rng_state(rng, loader)`` would succeed (checked on throwaway generators);
    ``refuse(message)`` raises otherwise."""
    if not isinstance(rng, dict) or "torch" not in rng or "python" not in rng:
        refuse("the RNG states are not valid (no torch / python state)")
    try:
        torch.Generator().set_state(rng["torch"])
        random.Random().setstate(rng["python"])
        if "numpy" in rng:
            import numpy as np
            np.random.RandomState().set_state(rng["numpy"])
        for s in rng.get("loader", []):
            torch.Generator().set_state(s)
    except (TypeError, RuntimeError, ValueError, ImportError) as e:
        refuse(f"the RNG states are not valid ({type(e).__name__}: {e})")
    generators = loader_generators(loader)
    if len(generators) != len(rng.get("loader", [])):
        refuse(f"the train loader has {len(generators)} generator(s), the checkpoint's had "
               f"{len(rng.get('loader', []))}; resume with the same kind of loader")
    if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) > torch.cuda.device_count():
        refuse(f"the checkpoint holds the RNG states of {len(rng['cuda'])} CUDA devices, "
               f"this machine has {torch.cuda.device_count()}")
