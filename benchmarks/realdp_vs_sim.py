"""Figure for docs/sim.md: real Pixel 4 dual-pixel cells (Xin et al., ICCV 2021; HIL_AF_REALDP) next to the domain-random
simulator and the held-out sim cameras.

Left: the correlation peak between the two half-aperture views (how alike the half-PSFs are) against
|disparity|, per 64 px cell with PDAF confidence >= 0.5.  Right: the left/right brightness ratio of a
white target across the field (per-view vignetting), real flat field vs the family's fitted range.
``python benchmarks/realdp_vs_sim.py --out docs/img/sim-vs-realdp.png [--cameras 12]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import os  # noqa: E402

REALDP = Path(os.environ.get("HIL_AF_REALDP") or ROOT.parent / "shared" / "realdp")  # as tests/_data.py


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hil_af.sim.realcheck import BINS, disparity_peak_cells, fit_lr_gain, lr_ratio_columns, peak_by_bin, sim_cells
    from hil_af.stacks import load_frame

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/img/sim-vs-realdp.png")
    ap.add_argument("--cameras", type=int, default=12)
    a = ap.parse_args(argv)
    if not (REALDP / "001.npz").exists():
        raise SystemExit(f"needs the real captures at {REALDP}")
    real = np.concatenate([disparity_peak_cells(load_frame(REALDP / f"{s}.npz")) for s in ("001", "002", "003", "004")])
    fam = sim_cells("domain-random", range(a.cameras))
    held = {p: sim_cells(p, range(1)) for p in ("sim-pixel", "sim-catseye")}
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    ax[0].scatter(np.abs(fam[:, 0]), fam[:, 1], s=4, c="0.75", label=f"domain-random, {a.cameras} cameras")
    for (p, c), col in zip(held.items(), ("tab:orange", "tab:green")):
        ax[0].scatter(np.abs(c[:, 0]), c[:, 1], s=6, c=col, label=f"{p} (held out)")
    ax[0].scatter(np.abs(real[:, 0]), real[:, 1], s=8, c="tab:blue", label="real Pixel 4 cells")
    rb, fb = peak_by_bin(real), peak_by_bin(fam)
    print("bin        real median  sim p10..p90")
    for b in BINS:
        if len(rb[b]) and len(fb[b]):
            print(f"{b[0]:>4.0f}-{b[1]:<4.0f}  {np.median(rb[b]):.3f} (n={len(rb[b])})   {np.percentile(fb[b], 10):.3f}..{np.percentile(fb[b], 90):.3f} (n={len(fb[b])})")
    ax[0].set_xlabel("|disparity| (px)")
    ax[0].set_ylabel("correlation peak of L vs R")
    ax[0].set_xlim(0, 14)
    ax[0].legend(fontsize=8, loc="lower left")
    x, ratio = lr_ratio_columns(load_frame(REALDP / "flatfield.npz"))
    o, v = fit_lr_gain(x, ratio)
    xx = np.linspace(-1, 1, 100)
    for oo, vv in ((-0.15, -0.3), (-0.15, 0.3), (0.15, -0.3), (0.15, 0.3)):
        ax[1].plot(xx, (1 - oo) * (1 - vv * xx) / ((1 + oo) * (1 + vv * xx)), c="0.8", lw=1)
    ax[1].plot(xx, (1 - o) * (1 - v * xx) / ((1 + o) * (1 + v * xx)), c="tab:blue", lw=1, ls="--",
               label=f"fit: imbalance {o:+.3f}, vignette_lr {v:+.3f}")
    ax[1].scatter(x, ratio, c="tab:blue", label="real flat field (column bands)")
    ax[1].set_xlabel("field x on the full sensor")
    ax[1].set_ylabel("L / R brightness")
    ax[1].set_title("grey: corners of the domain-random range", fontsize=9)
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=90)
    print(f"wrote {a.out}; flat-field fit o={o:+.4f} v={v:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
