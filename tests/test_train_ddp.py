"""Streaming + DistributedDataParallel training (hil_af.model.streaming / distributed).

The torchrun test runs ``torchrun --standalone --nproc-per-node 2 --no-python hil-af train`` on
CPU (gloo) on six tiny simulated stacks and compares it with a single-process run of the
same total batch on the same held-out stacks.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hil_af.cli import main  # noqa: E402
from hil_af.model.distributed import CHECKPOINT, DistConfig, SimulatedKill, load_checkpoint, train_distributed  # noqa: E402
from hil_af.model.encoding import EncodingConfig  # noqa: E402
from hil_af.model.simdata import make_stack  # noqa: E402
from hil_af.model.streaming import StackIndex, StreamingPairs, rank_shard, window_bytes  # noqa: E402
from hil_af.model.train import TrainConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
N = 9
MODEL_FILES = {"card.json", "step1.onnx", "step2.onnx", "weights.npz"}


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    d = tmp_path_factory.mktemp("stacks")
    for s in range(6):
        make_stack(d / f"s{s}.npz", "sim-default", seed=s, n_slices=N, grid=(3, 4))
    return d


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_shards_are_disjoint_by_stack_and_every_rank_takes_the_same_steps(stacks):
    index = StackIndex.build(stacks)
    assert len(index) == 6 and index.samples == 6 * 12 * N
    a, b = rank_shard(6, 0, 2, epoch=3, seed=0), rank_shard(6, 1, 2, epoch=3, seed=0)
    assert not set(a) & set(b) and sorted(a + b) == list(range(6))
    assert rank_shard(6, 0, 2, epoch=4, seed=0) != a or rank_shard(6, 0, 2, epoch=5, seed=0) != a  # reshuffled per epoch
    enc = EncodingConfig()
    for steps in (2, 25):  # fewer batches than the shard holds (21), and more (goes round again)
        for rank in (0, 1):
            got = _batches(StreamingPairs(index, enc, 16, steps, rank=rank, world=2, epoch=1, window=2))
            assert len(got) == steps and all(x.shape == (16, 5, 64, 64) and y.shape == (16,) for x, y in got)
    # DataLoader workers split a rank's shard and still deliver exactly `steps` batches
    ds = StreamingPairs(index, enc, 16, 7, rank=0, world=2, epoch=1, window=1)
    assert sum(1 for _ in torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)) == 7


def test_memory_is_a_window_of_stacks_and_a_resumed_epoch_is_the_same_data(stacks):
    index = StackIndex.build(stacks)
    enc = EncodingConfig()
    ds = StreamingPairs(index, enc, 64, index.samples // 64, window=2, noise=0.1, jitter=4, seed=5)
    full = _batches(ds)
    hw = np.load(index.paths[0])["left"].shape[1:]
    assert 0 < ds.peak_window_bytes <= window_bytes(N, hw, 2) < 2 * sum(Path(p).stat().st_size for p in index.paths)
    tail = _batches(StreamingPairs(index, enc, 64, index.samples // 64, window=2, noise=0.1, jitter=4, seed=5, skip=4))
    assert len(full) == 10 and len(tail) == 6
    for (x0, y0), (x1, y1) in zip(full[4:], tail):
        np.testing.assert_array_equal(y0, y1)
        np.testing.assert_array_equal(x0, x1)


def _card(d):
    return json.loads((Path(d) / "card.json").read_text())


def test_torchrun_two_processes_evaluate_like_one_process_of_the_same_batch(stacks, tmp_path):
    common = ["--stacks", str(stacks), "--epochs", "6", "--epochs2", "1", "--batch", "32", "--lr", "1e-2",
              "--threads", "1", "--val-frac", "0.34"]
    assert main(["train", *common, "--out", str(tmp_path / "one"), "--stream"]) == 0
    hil_af = shutil.which("hil-af") or str(Path(sys.executable).parent / "hil-af")
    if not Path(hil_af).is_file():
        pytest.skip("the hil-af console script is not installed next to this Python")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--no-python",
           hil_af, "train", *common, "--out", str(tmp_path / "two")]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)  # ~1 min idle; a shared CI box is slower
    assert r.returncode == 0, r.stderr[-3000:]
    assert set(p.name for p in (tmp_path / "two").iterdir()) == MODEL_FILES  # rank 0 wrote, once; no checkpoint left
    one, two = _card(tmp_path / "one"), _card(tmp_path / "two")
    assert two["distributed"]["world_size"] == 2 and two["distributed"]["backend"] == "gloo"
    assert two["distributed"]["batch_per_rank"] == 16 and two["distributed"]["launcher"] == "torchrun"
    assert one["distributed"]["world_size"] == 1 and one["distributed"]["batch_per_rank"] == 32
    assert one["data"]["val_stacks"] == two["data"]["val_stacks"]
    print("single", one["val"]["step1"], one["val"]["step2"], "\nddp x2", two["val"]["step1"], two["val"]["step2"])
    for step in ("step1", "step2"):
        assert two["val"][step]["le1"] >= one["val"][step]["le1"] - 0.1
        assert two["val"][step]["mae"] <= one["val"][step]["mae"] + 0.5
    assert two["val"]["step1"]["le1"] > 0.5  # it learned (a uniform guess among 9 slices: 0.33)
    import onnxruntime as ort

    x = np.zeros((3, 5, 64, 64), np.float32)
    assert ort.InferenceSession(str(tmp_path / "two" / "step2.onnx")).run(None, {"x": x})[0].shape == (3, N)


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_model(stacks, tmp_path):
    cfg = TrainConfig(epochs=2, epochs2=1, batch=32, threads=1, val_frac=0.34, max_samples_per_epoch=128,
                      max_val_pairs=64)
    train_distributed(stacks, tmp_path / "ref", cfg, DistConfig(stream=True, device="cpu", checkpoint_every=2))
    with pytest.raises(SimulatedKill):  # 4 steps an epoch: killed at step 3 of epoch 2, after a checkpoint at step 2
        train_distributed(stacks, tmp_path / "run", cfg,
                          DistConfig(stream=True, device="cpu", checkpoint_every=2, abort_after_steps=7))
    ck = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert (ck["phase"], ck["epoch"], ck["step"]) == (1, 1, 2)
    assert main(["train", "--stacks", str(stacks), "--out", str(tmp_path / "run"), "--epochs", "2", "--epochs2", "1",
                 "--batch", "32", "--threads", "1", "--val-frac", "0.34", "--samples-per-epoch", "128",
                 "--device", "cpu", "--resume", "--checkpoint-every", "2", "--lr", "0.01"]) == 2  # other settings: refused
    card = train_distributed(stacks, tmp_path / "run", cfg, DistConfig(device="cpu", resume=True, checkpoint_every=2))
    assert card["distributed"]["resumed_from"] == {"phase": 1, "epoch": 1, "step": 2, "world_size": 1}
    assert not (tmp_path / "run" / CHECKPOINT).exists()
    with np.load(tmp_path / "ref" / "weights.npz") as a, np.load(tmp_path / "run" / "weights.npz") as b:
        assert a.files == b.files
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_checkpoints_holding_pickled_objects_are_refused(tmp_path):
    from hil_af.errors import FormatError

    torch.save({"phase": 1, "payload": Path("x")}, tmp_path / "evil.pt")  # a non-tensor object: needs unpickling
    with pytest.raises(FormatError, match="not a readable hil-af checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")


def test_device_and_precision_choices(stacks, tmp_path, capsys):
    base = ["train", "--stacks", str(stacks), "--threads", "1", "--epochs", "1", "--epochs2", "1", "--batch", "8",
            "--samples-per-epoch", "16", "--val-frac", "0.34"]  # bf16 autocast is ~10x slower than fp32 on CPU
    if not torch.cuda.is_available():
        assert main([*base, "--out", str(tmp_path / "c"), "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "h"), "--device", "cpu", "--stream", "--precision", "fp16"]) == 2
    assert "fp16 needs a CUDA device" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "b"), "--device", "cpu", "--stream", "--precision", "bf16"]) == 0
    card = _card(tmp_path / "b")
    assert card["distributed"]["precision"] == "bfloat16" and card["distributed"]["device"] == "cpu"
    # exported from an fp32 CPU copy: float32 input, logits equal to the fp32 torch model's
    assert max(card["onnx_check"]["max_abs_logit_diff"].values()) < 1e-4
    import onnx

    m = onnx.load(str(tmp_path / "b" / "step1.onnx"))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in m.graph.initializer if t.data_type in (1, 10, 16))
