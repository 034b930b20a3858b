"""What a run leaves for people to read: TensorBoard events, a loss/metric plot (PNG), a JSON history.

Only rank 0 logs. The history (training losses at ``log_every`` steps, validation metrics) also travels
inside every checkpoint, so a resumed run continues the same curves; TensorBoard's ``purge_step``
drops events a killed run wrote after its last checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from avatex_core.atomic import atomic_path, write_json

TB_DIR = "tensorboard"
PLOT = "training.png"
HISTORY = "history.json"


class RunLog:
    """Training and validation history of one run, mirrored to TensorBoard, a PNG plot and JSON."""

    def __init__(self, out: Path, enabled: bool, history: dict | None = None, purge_step: int | None = None
                 ) -> None:
        self.out = Path(out)
        self.enabled = enabled
        history = history or {}
        self.train: list[dict] = [dict(r) for r in history.get("train", [])]
        self.val: list[dict] = [dict(r) for r in history.get("val", [])]
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.out / TB_DIR), purge_step=purge_step)

    def state(self) -> dict:
        """Plain containers for the checkpoint."""
        return {"train": [dict(r) for r in self.train], "val": [dict(r) for r in self.val]}

    def loss_curve(self, max_points: int = 500) -> list[list[float]]:
        """[[step, loss], ...] of the whole run, evenly thinned to at most ``max_points``.

        Progress events are throttled, so a client that only listened to them has a sparse curve; the
        final result carries this one so the client can finish with the complete picture.
        """
        rows = [r for r in self.train if "loss" in r]
        if len(rows) > max_points:
            keep = sorted({round(i * (len(rows) - 1) / (max_points - 1)) for i in range(max_points)})
            rows = [rows[i] for i in keep]
        return [[float(r["step"]), float(r["loss"])] for r in rows]

    def log_train(self, step: int, values: dict[str, float]) -> None:
        row = {"step": int(step), **{k: float(v) for k, v in values.items()}}
        self.train.append(row)
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"train/{k}", float(v), step)

    def log_val(self, step: int, values: dict[str, float]) -> None:
        row = {"step": int(step), **{k: float(v) for k, v in values.items() if isinstance(v, int | float)}}
        self.val.append(row)
        if self.writer is not None:
            for k, v in row.items():
                if k != "step":
                    self.writer.add_scalar(f"val/{k}", float(v), step)

    def flush(self) -> None:
        """Write history.json and the plot (atomically), flush TensorBoard."""
        if not self.enabled:
            return
        write_json(self.out / HISTORY, self.state())
        plot(self.out / PLOT, self.train, self.val)
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def plot(path: Path, train: list[dict], val: list[dict]) -> None:
    """Loss curves (left) and validation PATD / PIPATD (right) as one PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    ax_loss, ax_val = fig.subplots(1, 2)
    steps = [r["step"] for r in train]
    for key in sorted({k for r in train for k in r} - {"step", "lr"}):
        ys = [r.get(key) for r in train]
        pts = [(s, y) for s, y in zip(steps, ys, strict=True) if y is not None]
        if pts:
            ax_loss.plot(*zip(*pts, strict=True), label=key, lw=1.2)
    ax_loss.set_xlabel("step")
    ax_loss.set_title("training loss")
    if train:
        ax_loss.legend(fontsize=8)
    ax_loss.grid(alpha=0.3)
    for key in ("patd", "pipatd"):
        pts = [(r["step"], r[key]) for r in val if key in r]
        if pts:
            ax_val.plot(*zip(*pts, strict=True), marker="o", label=key.upper())
    ax_val.set_xlabel("step")
    ax_val.set_title("validation (CIEDE2000, test subjects)")
    if any("patd" in r for r in val):
        ax_val.legend(fontsize=8)
    ax_val.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
