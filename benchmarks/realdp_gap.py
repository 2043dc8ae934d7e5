"""Where the PE model's gap to classical PDAF on the real Pixel 4 cells comes from (README, "Real captures").

Three measurements on tests/test_realdp.py's cells (112 px, uniform ground truth, classical
confidence >= 0.5; HIL_AF_REALDP), each printed as mean |Spearman| with ground-truth defocus over
the four scenes unless said otherwise:

1. ``window``: the classical xcorr on the model's own windows (``hil_af.model.defocus.tile_windows``:
   3 x 3 windows of 64 px per cell, their disparities averaged; +-8/12/16 px) against the whole
   112 px cell (+-16): the part of the gap that is the model's smaller input, not the model.
2. ``texture``: contrast (std / mean of the cell's mean view, 64 px) and the slope of its row
   power spectrum (log-log, 2-20 cycles per 64 px) of the real cells and of the held-out sim
   cameras' test patches at 12 slices from focus (DATA/<camera>-test): does the sim's scene
   texture cover the real one?
3. ``--probe``: a ridge regression from the step-1 network's frozen features (the pooled 160
   features and the 128 hidden units of its head; lens slice 24 of 49 given for every patch, as
   for a frame without a sweep) to |disparity| in px (|k - gt| x the camera's px per slice),
   fitted on 48 of the pretraining stacks (DATA/train, every 2nd slice); ranked on the held-out
   sim frames of benchmarks/sim_ranking.py and on the real cells.  Needs torch (the [train] extra).
``python benchmarks/realdp_gap.py [--model models] [--data data/dr] [--probe]``
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REALDP = Path(os.environ.get("HIL_AF_REALDP") or ROOT.parent / "shared" / "realdp")  # as tests/_data.py
SCENES = ("001", "002", "003", "004")
CAMERAS = ("sim-pixel", "sim-catseye", "sim-wide")
K_ASK = 24  # the lens slice told to the network in the probe: the middle of 49


def real_cells(s: str):
    """(frame, cells int [C, 4], ground truth per cell [C], classical disparity per cell [C]) of scene ``s``."""
    from hil_af.sim.realcheck import graded_cells
    from hil_af.stacks import load_frame

    fr = load_frame(REALDP / f"{s}.npz")
    gt = np.load(REALDP / f"{s}_gt.npz", allow_pickle=False)["defocus"].astype(np.float64)
    rois, res, g, keep = graded_cells(fr, gt, 112, 16, 0.5)
    return fr, rois[keep], g[keep], res.disparity_px[keep]


def window_gap() -> None:
    from hil_af.model.defocus import tile_windows
    from hil_af.pdaf import estimate_rois
    from hil_af.sim.realcheck import spearman

    rows: dict[str, list[float]] = {}
    for s in SCENES:
        fr, cells, g, disp = real_cells(s)
        rows.setdefault("classical, 112 px cell, +-16", []).append(abs(spearman(disp, g)))
        wins, owner = tile_windows(cells, 64)
        for S in (8, 12, 16):
            e = estimate_rois(fr.left, fr.right, wins, method="xcorr", max_shift=S, white_level=fr.white_level)
            per = np.bincount(owner, weights=e.disparity_px) / np.bincount(owner)
            rows.setdefault(f"classical, 3 x 3 windows of 64 px, +-{S}", []).append(abs(spearman(per, g)))
    print("1. window: |Spearman| per scene (001-004), mean")
    for k, v in rows.items():
        print(f"   {k:42s} {' '.join(f'{x:.3f}' for x in v)}  mean {np.mean(v):.3f}")


def texture_stats(patch: np.ndarray) -> tuple[float, float]:
    """(contrast std / mean, row power-spectrum slope over 2..20 cycles per width) of a 2-D patch."""
    c = np.asarray(patch, dtype=np.float64)
    P = (np.abs(np.fft.rfft(c - c.mean(axis=1, keepdims=True), axis=1)) ** 2).mean(axis=0)
    f = np.arange(2, 21)
    return float(c.std() / c.mean()), float(np.polyfit(np.log(f), np.log(P[f] + 1e-12), 1)[0])


def texture_gap(data: Path) -> None:
    from hil_af.stacks import load_stack, stack_files

    real = []
    for s in SCENES:
        fr, cells, _, _ = real_cells(s)
        img = (fr.left + fr.right) / 2.0
        real += [texture_stats(img[y + 24:y + 88, x + 24:x + 88]) for x, y, _, _ in cells]
    sim = []
    for cam in CAMERAS:
        for f in stack_files(data / f"{cam}-test")[:4]:
            st = load_stack(f)
            for i, (x, y, w, h) in enumerate(st.rois):
                k = int(st.gt_index[i])
                fr = st.frame(k + 12 if k + 12 < st.n else k - 12)
                sim.append(texture_stats(((fr.left + fr.right) / 2.0)[y:y + 64, x:x + 64]))
    print("2. texture: median [25th, 75th percentile]")
    for name, v in (("real Pixel 4 cells", np.array(real)), ("held-out sim test patches", np.array(sim))):
        q = np.percentile(v, [50, 25, 75], axis=0)
        print(f"   {name:26s} ({len(v)}): contrast {q[0, 0]:.3f} [{q[1, 0]:.3f}, {q[2, 0]:.3f}], "
              f"spectral slope {q[0, 1]:.2f} [{q[1, 1]:.2f}, {q[2, 1]:.2f}]")


def probe(model_dir: Path, data: Path) -> None:
    import torch

    from hil_af.drivers.registry import open_rig
    from hil_af.clock import SimClock
    from hil_af.model.defocus import tile_windows
    from hil_af.model.encoding import encode_frame_rois
    from hil_af.model.inference import PEPredictor
    from hil_af.model.nets import build
    from hil_af.model.train import load_weights
    from hil_af.sim.realcheck import spearman
    from hil_af.stacks import load_stack, stack_files

    torch.set_num_threads(1)
    pred = PEPredictor(model_dir)
    net = build(str(pred.card["arch"]), pred.n_slices)
    load_weights(net, Path(model_dir) / "weights.npz", "step1")
    net.eval()
    enc = pred.encoding

    @torch.no_grad()
    def feats(x: np.ndarray) -> np.ndarray:
        xb = torch.from_numpy(x)
        f = torch.flatten(net.pool(net.features(xb)), 1)
        h = net.classifier[1](net.classifier[0](torch.cat([f, xb[:, 2:5].mean(dim=(2, 3))], 1)))
        return torch.cat([f, h], 1).numpy()

    def encode(fr, rois, n):
        return encode_frame_rois(fr.left, fr.right, rois, fr.origin, fr.sensor_hw or fr.shape, K_ASK, n, enc, None)

    X, Y = [], []
    for f in stack_files(data / "train")[:48]:
        st = load_stack(f)
        with open_rig(st.meta["source"], clock=SimClock()) as rig:  # the stack's camera: its px per slice
            pps = rig.source.params.disparity_px_per_dioptre * abs(float(np.diff(st.meta["lens_dioptres"]).mean()))
        gt = np.asarray(st.gt_index, dtype=np.float64)
        for k in range(0, st.n, 2):
            X.append(feats(encode(st.frame(k), st.rois, st.n)))
            Y.append(np.abs(k - gt) * pps)
    Xa, ya = np.concatenate(X), np.log1p(np.concatenate(Y))
    mu, sd = Xa.mean(axis=0), Xa.std(axis=0) + 1e-6
    Z = (Xa - mu) / sd
    w = np.linalg.solve(Z.T @ Z + 1e-3 * len(Z) * np.eye(Z.shape[1]), Z.T @ (ya - ya.mean()))

    def readout(F: np.ndarray) -> np.ndarray:
        return ((F - mu) / sd) @ w

    print(f"3. probe: ridge on frozen features, {len(Xa)} training patches")
    real = []
    for s in SCENES:
        fr, cells, g, _ = real_cells(s)
        wins, owner = tile_windows(cells, int(enc.size))
        v = readout(feats(encode(fr, wins, pred.n_slices)))
        real.append(abs(spearman(np.bincount(owner, weights=v) / np.bincount(owner), g)))
    print(f"   real cells: {' '.join(f'{x:.3f}' for x in real)}  mean {np.mean(real):.3f}")
    from hil_af.pdaf import estimate_rois

    for cam in CAMERAS:
        rp, rc = [], []
        for f in stack_files(data / f"{cam}-test"):
            st = load_stack(f)
            gt = np.asarray(st.gt_index, dtype=np.float64)
            for k in range(0, st.n, 4):  # the frames of benchmarks/sim_ranking.py
                true = gt - k
                if np.ptp(true) < 3 or np.sign(true).min() != np.sign(true).max() or np.any(true == 0):
                    continue
                fr = st.frame(k)
                rp.append(abs(spearman(readout(feats(encode(fr, st.rois, st.n))), np.abs(true))))
                e = estimate_rois(fr.left, fr.right, st.rois, method="xcorr", max_shift=16, white_level=fr.white_level)
                rc.append(abs(spearman(e.disparity_px, np.abs(true))))
        print(f"   {cam}: {len(rp)} frames, probe {np.mean(rp):.3f}, classical {np.mean(rc):.3f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models"))
    ap.add_argument("--data", default="data/dr")
    ap.add_argument("--probe", action="store_true", help="also fit and rank the frozen-feature probe (torch)")
    a = ap.parse_args(argv)
    if not (REALDP / "001.npz").exists():
        raise SystemExit(f"needs the real captures at {REALDP} (HIL_AF_REALDP)")
    window_gap()
    texture_gap(Path(a.data))
    if a.probe:
        probe(Path(a.model), Path(a.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
