"""Plots of a run with matplotlib, an optional extra (``pip install nytorch_ext[plot]``).

:func:`plot_history` draws a History; :func:`member_curves` draws one panel of
per-member curves (every member thin, the best one thick), for any per-member series
(the digits example uses it for accuracy over batches). Both draw on
``matplotlib.figure.Figure`` objects, never through pyplot, so no GUI backend or global
figure state is involved.
"""
from __future__ import annotations

from .extras import require


def _figure_class():
    return require("matplotlib.figure", "Figure", "History.plot", "plot", "matplotlib")


def member_curves(ax, x, rows, *, best=None, label: str = "", style: str = "-", color=None) -> None:
    """On ``ax``: ``rows[t][k]`` (member k's value at ``x[t]``) as one thin line per
    member and, given ``best`` (``best[t]``: the best member at ``x[t]``), the best
    member's values as a thick line labelled ``label``."""
    if not rows:
        return
    k = len(rows[0])
    line = None
    for i in range(k):
        (line,) = ax.plot(x, [r[i] for r in rows], style, lw=0.7, alpha=0.35,
                          color=color if color is not None else (line.get_color() if line else None))
    if best is not None:
        ax.plot(x, [r[b] for r, b in zip(rows, best)], style, lw=2.2, color=line.get_color(),
                label=f"{label} (best member)" if label else "best member")
    elif label:
        line.set_label(f"{label} (members)")


def _panels(history, keys) -> list[tuple[str, list[str]]]:
    """(title, history keys) per panel. A key is a logged key (``"val_loss"``,
    ``"lr"``), a quantity whose ``train_`` / ``val_`` keys share a panel (``"loss"``,
    ``"accuracy"``) or ``"batch_loss"``."""
    logged = history.keys
    if keys is None:
        quantities = [k[len("train_"):] for k in logged if k.startswith("train_")]
        keys = quantities + [k for k in logged if not k.startswith(("train_", "val_"))]
    elif isinstance(keys, str):
        keys = [keys]
    panels = []
    for key in keys:
        if key == "batch_loss" or key in logged:
            panels.append((key, [key]))
            continue
        pair = [k for k in (f"train_{key}", f"val_{key}") if k in logged]
        if not pair:
            raise ValueError(f"History.plot: {key!r} is not logged; logged: {logged} (and 'batch_loss')")
        panels.append((key, pair))
    return panels


def plot_history(history, keys=None, path=None, *, axes=None):
    """Draw ``history``: one panel per entry of ``keys`` (default: the loss and every
    metric, then ``lr`` when logged; see :func:`_panels`), epochs on the x axis, each
    member thin and the best member (``best_<key>``) thick, training dashed and
    validation solid; ``"batch_loss"`` draws every batch's loss per member with the
    lowest thick (``micro_train_loss``). ``axes``: matplotlib Axes to draw on, one per
    panel (default: a new Figure, panels side by side). ``path``: save the figure there
    (any format matplotlib knows from the suffix). Returns the Figure."""
    if not history.records and not history.batch_loss:
        raise ValueError("History.plot: nothing recorded yet")
    panels = _panels(history, keys)
    if axes is None:
        figure = _figure_class()(figsize=(5 * len(panels), 3.6), layout="constrained")
        axes = figure.subplots(1, len(panels), squeeze=False)[0]
    else:
        axes = list(axes)
        if len(axes) != len(panels):
            raise ValueError(f"History.plot: {len(panels)} panel(s) ({[t for t, _ in panels]}) but "
                             f"{len(axes)} axes given")
        figure = axes[0].figure
    epochs = [r.get("epoch", i) for i, r in enumerate(history.records)]
    for ax, (title, series) in zip(axes, panels):
        for key in series:
            if key == "batch_loss":
                rows = history.batch_loss
                member_curves(ax, range(len(rows)), rows, best=[min(range(len(r)), key=r.__getitem__) for r in rows],
                              label="batch loss")
                ax.set_xlabel("batch")
                continue
            style = "--" if key.startswith("train_") else "-"
            member_curves(ax, epochs, history.column(key), best=history.best, label=key, style=style)
            ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend(fontsize="small")
    if path is not None:
        figure.savefig(path)
    return figure
