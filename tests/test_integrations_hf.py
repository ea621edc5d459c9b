"""tpde.integrations.hf: a Trainer saving through TPDECallback, restored and resumed bit-exactly."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tpde import CheckpointStore  # noqa: E402
from tpde.integrations.hf import TPDECallback, restore  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n: int = 48):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 100, (n, 12), generator=g)
        self.y = torch.randint(0, 2, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.x[i], "labels": self.y[i]}


def train(output_dir, callbacks=(), resume=None, init_seed=0) -> dict:
    config = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=16)
    torch.manual_seed(init_seed)
    model = transformers.BertForSequenceClassification(config)
    args = transformers.TrainingArguments(
        str(output_dir), max_steps=12, save_steps=4, save_total_limit=1, per_device_train_batch_size=8,
        report_to=[], use_cpu=True, seed=0, logging_steps=100, disable_tqdm=True, learning_rate=1e-3,
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Tokens(), callbacks=list(callbacks))
    trainer.train(resume_from_checkpoint=resume)
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def same_bits(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and torch.equal(a[k].view(-1).view(torch.uint8), b[k].view(-1).view(torch.uint8))
        for k in a
    )


def test_trainer_saves_into_store_and_resumes_bit_exact(tmp_path):
    store_path = tmp_path / "run.tpde"
    full = train(tmp_path / "a", [TPDECallback(store_path)])
    store = CheckpointStore(store_path, mode="r")
    assert store.steps() == [4, 8, 12]
    assert [p.name for p in (tmp_path / "a").iterdir() if p.name.startswith("checkpoint-")] == ["checkpoint-12"]
    blobs = {b.name for b in store.info(8).blobs}
    assert {"files/rng_state.pth", "files/training_args.bin", "files/trainer_state.json"} <= blobs
    assert store.info(8).kind == "delta" and store.verify() == []

    folder = restore(store_path, tmp_path / "restored", step=4)
    assert folder.endswith("checkpoint-4")
    resumed = train(tmp_path / "b", resume=folder, init_seed=1)  # other init: only the restore makes it equal
    assert same_bits(resumed, full)
    assert not same_bits(train(tmp_path / "c", init_seed=1), full)


def test_restore_latest_and_keep_on_disk_zero(tmp_path):
    store_path = tmp_path / "run.tpde"
    train(tmp_path / "a", [TPDECallback(store_path, keep_on_disk=0)])
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith("checkpoint-")]
    folder = restore(store_path, tmp_path / "r")
    assert folder.endswith("checkpoint-12")
    state = torch.load(f"{folder}/optimizer.pt", weights_only=True)
    assert state["state"][0]["exp_avg"].shape[0] == 100
