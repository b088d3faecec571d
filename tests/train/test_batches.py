"""Batch formats: (x, y), (x, y, sample_weight) with the weights used, dicts; Evaluation as a mapping."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nytorch_ext.train import BatchFormat, SwarmTrainer, accuracy
from test_train import ExplodingLoader, flat, make_swarm, one_thread, sgd, toy_data  # noqa: F401


def test_sample_weights_give_the_weighted_mean_loss_and_its_gradient():
    x, y = toy_data(16)
    w = torch.rand(16, generator=torch.Generator().manual_seed(1))
    hand = make_swarm(2)
    for m in hand:
        opt = torch.optim.SGD(m.parameters(), lr=0.5)
        loss = (F.cross_entropy(m(x), y, reduction="none") * w).sum() / w.sum()
        loss.backward()
        opt.step()
    trainer = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    history = trainer.fit([(x, y, w)], epochs=1, optimizer=sgd(0.5), evolve_every=0, progress=False)
    assert all(torch.allclose(flat(a), flat(b), rtol=0, atol=1e-7) for a, b in zip(hand, trainer.swarm))
    unweighted = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    plain = unweighted.fit([(x, y)], epochs=1, optimizer=sgd(0.5), evolve_every=0, progress=False)
    assert history.batch_loss[0] != plain.batch_loss[0]  # the weights are not dropped
    ones = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    same = ones.fit([(x, y, torch.ones(16))], epochs=1, optimizer=sgd(0.5), evolve_every=0, progress=False)
    assert same.batch_loss[0] == pytest.approx(plain.batch_loss[0], rel=1e-6)


def test_evaluation_with_sample_weights_is_the_weighted_mean_over_all_samples():
    x, y = toy_data(24)
    w = torch.rand(24, generator=torch.Generator().manual_seed(2))
    trainer = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    ev = trainer.evaluate([(x[:8], y[:8], w[:8]), (x[8:], y[8:], w[8:])], {"accuracy": accuracy}, ensemble=True)
    with torch.no_grad():
        expected = [float((F.cross_entropy(m(x), y, reduction="none") * w).sum() / w.sum()) for m in trainer.swarm]
    assert ev.loss == pytest.approx(expected, rel=1e-5)
    assert ev["loss"] == ev.loss and ev["accuracy"] == ev.accuracy and ev["best_accuracy"] == ev.best_accuracy
    assert "accuracy" in ev and "nope" not in ev and ev.keys()[:2] == ["loss", "best_loss"]
    assert ev["ensemble"]["loss"] > 0 and ev["samples"] == 24
    with pytest.raises(KeyError, match="keys"):
        ev["nope"]


def test_a_loss_without_reduction_none_is_a_clear_error_with_weights():
    x, y = toy_data(8)
    trainer = SwarmTrainer(make_swarm(2), device="cpu")
    with pytest.raises(TypeError, match="reduction='none'"):
        trainer.fit([(x, y, torch.ones(8))], epochs=1, evolve_every=0, progress=False,
                    loss=lambda out, target: F.cross_entropy(out, target))
    with pytest.raises(ValueError, match="one loss per sample"):
        trainer.fit([(x, y, torch.ones(8))], epochs=1, evolve_every=0, progress=False,
                    loss=lambda out, target, reduction="mean": F.cross_entropy(out, target))
    with pytest.raises(ValueError, match="sample_weight must be a 1-D tensor"):
        trainer.fit([(x, y, torch.ones(8, 1))], epochs=1, evolve_every=0, progress=False)


def test_dict_batches_with_default_and_configured_keys():
    x, y = toy_data(16)
    a = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    a.fit([(x, y)], epochs=1, optimizer=sgd(0.5), evolve_every=0, progress=False)
    b = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    b.fit([{"input": x, "target": y, "id": torch.arange(16)}], epochs=1, optimizer=sgd(0.5), evolve_every=0,
          progress=False)
    c = SwarmTrainer(make_swarm(2), device="cpu", seed=0)
    keys = {"input": "image", "target": "label", "weight": "w"}
    c.fit([{"image": x, "label": y, "w": torch.ones(16)}], val_data=[{"image": x, "label": y}], epochs=1,
          optimizer=sgd(0.5), evolve_every=0, progress=False, batch_keys=keys)
    for m, n, o in zip(a.swarm, b.swarm, c.swarm):
        assert torch.equal(flat(m), flat(n)) and torch.allclose(flat(m), flat(o), atol=1e-7)
    assert c.evaluate([{"image": x, "label": y}]).loss == c.evaluate((x, y)).loss
    assert torch.equal(c.predict([{"image": x}], use=0), c.predict(x, use=0))


@pytest.mark.parametrize("batch, match", [
    ((torch.zeros(2, 64),), "pair"),
    ((torch.zeros(2, 64), torch.zeros(2), torch.ones(2), torch.ones(2)), "tuple of length 4"),
    ({"x": torch.zeros(2, 64), "y": torch.zeros(2)}, "no key 'input'"),
    (torch.zeros(2, 64), "got Tensor"),
])
def test_other_batches_are_a_clear_error_before_training(batch, match):
    trainer = SwarmTrainer(make_swarm(2), device="cpu")
    with pytest.raises(ValueError, match=match):
        trainer.fit([batch], epochs=1, evolve_every=0, progress=False)
    assert trainer.optimizers is None


def test_bad_batch_keys():
    with pytest.raises(TypeError, match="batch_keys must be a dict"):
        BatchFormat.checked(("image", "label"))
    with pytest.raises(ValueError, match="unknown role"):
        BatchFormat.checked({"inputs": "image"})
    with pytest.raises(TypeError, match=r"batch_keys\['target'\]"):
        BatchFormat.checked({"target": 3})
    with pytest.raises(TypeError, match="batch_keys"):
        SwarmTrainer(make_swarm(2), device="cpu").fit(ExplodingLoader(), evolve_every=0, batch_keys=["a"])
