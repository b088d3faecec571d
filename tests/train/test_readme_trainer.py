"""The README's trainer section: its complete example runs as written."""
from __future__ import annotations

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def readme_trainer_example() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("### Training: gradient descent plus APSO", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the trainer section shows one complete example"
    return blocks[0]


def test_the_readme_trainer_example_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn")
    code = readme_trainer_example()
    try:
        import matplotlib
        matplotlib.use("Agg")
        plots = True
    except ImportError:  # the optional extra: run everything but the plot
        plots = False
        code = "\n".join(line for line in code.splitlines() if "history.plot(" not in line)
    import torch
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        namespace: dict = {}
        exec(compile(code, "README.md", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr()
    assert re.search(r"member \d: test accuracy 0\.\d{3}; ensemble 0\.\d{3}", out.out)
    assert "Epoch 1/6: [" in out.err
    history, ev = namespace["history"], namespace["ev"]
    assert ev["accuracy"][namespace["best"]] >= 0.85, ev
    assert {"run/last.pt", "run/log.csv"} | ({"run/curves.png"} if plots else set()) <= {
        os.path.relpath(os.path.join(d, f), tmp_path) for d, _, fs in os.walk(tmp_path) for f in fs}
    assert "lr" in history.keys and namespace["trainer"].step_settings.precision.name == "bf16"
