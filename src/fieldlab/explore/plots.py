"""Pictures of one block: the search tree (nodes coloured by R2, edges parent -> child) and R2 per iteration."""

from __future__ import annotations

from pathlib import Path

from fieldlab.explore.journal import Node


def _depths(nodes: list[Node]) -> dict[int, int]:
    by_id = {n.id: n for n in nodes}
    depth: dict[int, int] = {}
    for n in nodes:
        d, k = 0, n.parent
        while k is not None and k in by_id:
            d, k = d + 1, by_id[k].parent
        depth[n.id] = d
    return depth


def plot_block(nodes: list[Node], out_dir: str | Path, block: int) -> list[Path]:
    """Write ``tree_block{b}.png`` and ``r2_block{b}.png`` for one block; return their paths.

    Tree layout: x = iteration, y = depth below the root; failed nodes are grey crosses.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colors

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    depth = _depths(nodes)
    pos = {n.id: (n.iteration, -depth[n.id]) for n in nodes}
    ok = [n for n in nodes if n.r2 is not None]
    low = min([n.r2 for n in ok] + [0.9])
    norm = colors.Normalize(vmin=max(low, -1.0), vmax=1.0)

    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(nodes) + 2), 4), layout="constrained")
    for n in nodes:
        if n.parent in pos:
            (x0, y0), (x1, y1) = pos[n.parent], pos[n.id]
            ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "color": "0.5"})
    if ok:
        sc = ax.scatter(
            [pos[n.id][0] for n in ok],
            [pos[n.id][1] for n in ok],
            c=[n.r2 for n in ok],
            cmap="viridis",
            norm=norm,
            s=260,
            zorder=3,
            edgecolors="k",
        )
        fig.colorbar(sc, ax=ax, label="final R2")
    bad = [n for n in nodes if n.r2 is None]
    ax.scatter([pos[n.id][0] for n in bad], [pos[n.id][1] for n in bad], marker="x", c="0.5", s=120, zorder=3)
    for n in nodes:
        ax.text(pos[n.id][0], pos[n.id][1], str(n.id), ha="center", va="center", fontsize=7, color="w", zorder=4)
    ax.set(xlabel="iteration", ylabel="depth", title=f"block {block}: search tree")
    ax.set_yticks(sorted({-d for d in depth.values()}), [str(d) for d in sorted(set(depth.values()), reverse=True)])
    tree = out_dir / f"tree_block{block}.png"
    fig.savefig(tree, dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
    its = [n.iteration for n in ok]
    r2 = [n.r2 for n in ok]
    best = [max(r2[: i + 1]) for i in range(len(r2))]
    ax.plot(its, r2, "o", label="R2")
    ax.step(its, best, where="post", label="best so far")
    for n in bad:
        ax.axvline(n.iteration, color="0.8", lw=1)
    ax.set(xlabel="iteration", ylabel="final R2", title=f"block {block}: R2 per iteration")
    ax.legend()
    curve = out_dir / f"r2_block{block}.png"
    fig.savefig(curve, dpi=100)
    plt.close(fig)
    return [tree, curve]
