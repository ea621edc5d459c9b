"""tpde.integrations.lightning: ModelCheckpoint saving through CheckpointIO, resumed bit-exactly."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")

from tpde import CheckpointStore, TPDEError  # noqa: E402
from tpde.integrations.lightning import CheckpointIO, read_pointer  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


class Model(L.LightningModule):
    def __init__(self, lr: float = 0.01):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))

    def training_step(self, batch, _index):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 3)}


def fit(root, store, ckpt_path=None, init_seed=0) -> tuple[dict, L.Trainer]:
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64, 8, generator=g), torch.randint(0, 2, (64,), generator=g))
    L.seed_everything(init_seed, verbose=False)
    model = Model()
    L.seed_everything(0, verbose=False)
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=root / "ckpt", every_n_epochs=1, save_top_k=-1)
    trainer = L.Trainer(max_epochs=3, default_root_dir=root, callbacks=[checkpoints], plugins=[CheckpointIO(store)],
                        logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    order = torch.utils.data.distributed.DistributedSampler(data, num_replicas=1, rank=0, seed=0)  # by epoch
    loader = torch.utils.data.DataLoader(data, batch_size=8, sampler=order)
    trainer.fit(model, loader, ckpt_path=ckpt_path)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, trainer


def same_bits(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8)) for k in a)


def test_model_checkpoint_through_store_resumes_bit_exact(tmp_path):
    store_path = tmp_path / "run.tpde"
    full, _ = fit(tmp_path / "a", store_path)
    store = CheckpointStore(store_path, mode="r")
    assert store.steps() == [8, 16, 24]
    assert [h.kind for h in store.history()] == ["keyframe", "delta", "delta"]
    pointer = tmp_path / "a" / "ckpt" / "epoch=0-step=8.ckpt"
    assert read_pointer(pointer) == 8 and pointer.stat().st_size < 200  # a pointer, not the state
    resumed, trainer = fit(tmp_path / "b", tmp_path / "b.tpde", ckpt_path=str(pointer), init_seed=1)
    assert trainer.global_step == 24 and same_bits(resumed, full)
    assert not same_bits(fit(tmp_path / "c", tmp_path / "c.tpde", init_seed=1)[0], full)


def test_remove_and_bad_pointer(tmp_path):
    io = CheckpointIO(CheckpointStore(tmp_path / "s.tpde", keyframe_every=2), prune=True)
    for step in (1, 2, 3):
        io.save_checkpoint({"global_step": step, "w": torch.full((4,), float(step))}, tmp_path / f"{step}.ckpt")
    io.save_checkpoint({"global_step": 3, "w": torch.zeros(4)}, tmp_path / "last.ckpt")  # same global step
    assert read_pointer(tmp_path / "last.ckpt") == 4
    assert torch.equal(io.load_checkpoint(tmp_path / "3.ckpt")["w"], torch.full((4,), 3.0))
    io.remove_checkpoint(tmp_path / "1.ckpt")
    assert not (tmp_path / "1.ckpt").exists() and io.store.steps() == [1, 2, 3, 4]  # step 2 is a delta on 1
    io.remove_checkpoint(tmp_path / "2.ckpt")
    assert io.store.steps() == [3, 4]
    (tmp_path / "bad.ckpt").write_text(json.dumps({"tpde_checkpoint": {"step": "x"}}))
    with pytest.raises(TPDEError, match="not a tpde checkpoint pointer"):
        io.load_checkpoint(tmp_path / "bad.ckpt")
    with pytest.raises(FileNotFoundError):
        io.load_checkpoint(tmp_path / "nope.ckpt")
