"""The training loop's callbacks: hook order, periodic files, and no effect on the state."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bida_app.training import TrainConfig
from bida_app.training.callbacks import Callback
from bida_app.training.data import SliceSet
from bida_app.training.trainer import Trainer


def _slices(n: int = 24, size: int = 32) -> SliceSet:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:size, :size] / size
    freqs = rng.uniform(1, 4, size=(n, 2))
    slices = np.sin(np.pi * freqs[:, :1, None] * yy) * np.cos(np.pi * freqs[:, 1:, None] * xx)
    return SliceSet(
        plane="axial",
        slices=slices.astype(np.float32),
        volume=np.arange(n) % 4,
        position=np.arange(n),
        bbox=np.tile([0, size, 0, size], (n, 1)),
        sources=[f"v{i}" for i in range(4)],
        key="synthetic",
    )


def _cfg(**kw) -> TrainConfig:
    base = dict(plane="axial", steps=5, preset="tiny", batch_size=2, lr=1e-3, warmup=1)
    base |= dict(val_fraction=0.25, val_every=2, val_size=4, log_every=1, n_grid=1)
    base |= dict(sample_steps=1, sample_every=2, checkpoint_every=2, device="cpu")
    return TrainConfig(**(base | kw))


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.rows: list[dict] = []

    def on_start(self, trainer):
        self.calls.append(("start", trainer.step))

    def on_log(self, trainer, row):
        self.rows.append(row)

    def on_step(self, trainer):
        self.calls.append(("step", trainer.step))

    def on_end(self, trainer):
        self.calls.append(("end", trainer.step))

    def on_close(self, trainer):
        self.calls.append(("close", trainer.step))


def test_hooks_are_called_in_order(tmp_path: Path):
    rec = Recorder()
    trainer = Trainer(_slices(), _cfg(), tmp_path)
    result = trainer.run(progress=False, callbacks=[rec])
    steps = [("step", s) for s in range(1, 6)]
    assert rec.calls == [("start", 0), *steps, ("end", 5), ("close", 5)]
    assert rec.rows == result.history and [r["step"] for r in rec.rows] == [0, 1, 2, 3, 4, 5]
    csv_steps = [int(line.split(",")[0]) for line in (tmp_path / "logs" / "axial.csv")
                 .read_text().splitlines()[1:]]  # fmt: skip
    assert csv_steps == [0, 1, 2, 3, 4, 5]
    assert result.weights == tmp_path / "axial.json" and result.weights.is_file()


def test_close_runs_after_an_error(tmp_path: Path):
    class Boom(Callback):
        def on_step(self, trainer):
            if trainer.step == 2:
                raise RuntimeError("boom")

    rec = Recorder()
    with pytest.raises(RuntimeError, match="boom"):
        Trainer(_slices(), _cfg(), None).run(progress=False, callbacks=[Boom(), rec])
    assert rec.calls[-1] == ("close", 2) and ("end", 2) not in rec.calls


def test_periodic_checkpoints_and_grids(tmp_path: Path, monkeypatch):
    saved: list[int] = []
    save = Trainer.save

    def spy(self):
        saved.append(self.step)
        return save(self)

    monkeypatch.setattr(Trainer, "save", spy)
    Trainer(_slices(), _cfg(), tmp_path).run(progress=False)
    assert saved == [2, 4, 5]  # every 2 steps, and the last
    grids = sorted(p.name for p in (tmp_path / "samples").glob("*.png"))
    assert grids == [f"axial_step000000{s}.png" for s in (2, 4, 5)]
    assert (tmp_path / "logs" / "axial_loss.png").is_file()


def test_in_memory_training_writes_nothing(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = Trainer(_slices(), _cfg(), None).run(progress=False)
    assert result.weights is None and list(tmp_path.iterdir()) == []


def test_resume_through_the_callbacks_is_exact(tmp_path: Path):
    """Interrupted at a periodic checkpoint (grids and logs on the way), resumed: the final
    state equals the straight run's, bit for bit."""
    straight = Trainer(_slices(), _cfg(steps=6), tmp_path / "a")
    straight.run(progress=False)
    Trainer(_slices(), _cfg(steps=6), tmp_path / "b").run(progress=False, stop_after=3)
    resumed = Trainer(_slices(), _cfg(steps=6), tmp_path / "b")
    state = torch.load(tmp_path / "b" / "checkpoints" / "axial.pt", weights_only=True)
    resumed.load_state_dict(state)
    resumed.run(progress=False)
    a, b = straight.state_dict(), resumed.state_dict()
    assert a["step"] == b["step"] == 6
    for key in ("model",):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    assert all(torch.equal(a["ema"]["module"][k], b["ema"]["module"][k]) for k in a["model"])
    assert all(torch.equal(a["rng"][k], b["rng"][k]) for k in ("data", "noise", "torch"))
    assert [h.get("loss") for h in a["history"]] == [h.get("loss") for h in b["history"]]
    rows = [(tmp_path / d / "logs" / "axial.csv").read_text().splitlines() for d in "ab"]
    assert [r.split(",")[:4] for r in rows[0]] == [r.split(",")[:4] for r in rows[1]]
