"""``hil-af calibrate report``: PNG plots and an index.html for a CAL.json.

Plots (matplotlib, the ``[report]`` extra, imported only here):
- ``fits.png``: disparity (px) vs defocus (native units) per cell, the
  measured points (shade = confidence), the cell's fit and the global fit;
- ``maps.png``: heat maps over the sensor of the DCC (native units per px),
  the offset (px) and the fit's residual RMS (px), borrowed cells hatched;
- ``residuals.png``: residuals of the points against their cell's fit, vs
  defocus and as a histogram.
Points come from the calibration's stored subsample, or from ``samples``
(the same keys: cell, defocus, disparity_px, confidence) recomputed from
the stacks.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInput

# residual plots show +-this many px; points beyond are drawn on the edge and counted
RESIDUAL_CLIP_PX = 3.0


def _mpl():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from ..text import install_hint

        raise BadInput(f"hil-af calibrate report needs matplotlib, the [report] extra: {install_hint('report')}") from None
    return plt


def write_report(cal: dict[str, Any], out_dir: str | os.PathLike, *, cal_path: str | None = None,
                 samples: dict[str, list] | None = None) -> list[Path]:
    """Write fits.png, maps.png, residuals.png and index.html into ``out_dir``; returns the paths."""
    plt = _mpl()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    R, C = cal["grid"]
    H, W = cal["sensor_hw"]
    units = cal["lens_units"]
    cells = cal["cells"]
    s = samples if samples is not None else (cal.get("samples") or {"cell": [], "defocus": [], "disparity_px": [], "confidence": []})
    cid = np.asarray(s["cell"], np.int64)
    x = np.asarray(s["defocus"], np.float64)
    d = np.asarray(s["disparity_px"], np.float64)
    conf = np.asarray(s["confidence"], np.float64)
    g_all = np.array([c["gain_px_per_unit"] for c in cells])
    o_all = np.array([c["offset_px"] for c in cells])
    gg, go = cal["global_fit"]["gain_px_per_unit"], cal["global_fit"]["offset_px"]
    limit = float(cal.get("disparity_limit_px", cal["estimator"]["max_shift_px"]))
    ymax = float(cal["estimator"]["max_shift_px"])
    files = []

    # -- per-cell fits -------------------------------------------------------
    fig, axes = plt.subplots(R, C, figsize=(3.2 * C + 1, 2.6 * R + 1), squeeze=False, sharex=True, sharey=True)
    xr = np.array([x.min(), x.max()]) if x.size else np.array([-1.0, 1.0]) / abs(gg)
    for i, c in enumerate(cells):
        ax = axes[i // C, i % C]
        m = cid == i
        if m.any():
            ax.scatter(x[m], d[m], s=6, c=conf[m], cmap="viridis", vmin=0, vmax=1, linewidths=0)
        ax.plot(xr, c["gain_px_per_unit"] * xr + c["offset_px"], "r-", lw=1.2, label="cell fit")
        ax.plot(xr, gg * xr + go, "k--", lw=0.8, label="global fit")
        ax.axhspan(-limit, limit, color="0.92", zorder=-1)
        tag = " (borrowed)" if c.get("borrowed") else ""
        ax.set_title(f"r{c['row']} c{c['col']}{tag}\nDCC {c['dcc_units_per_px']:.3g} {units}/px, o {c['offset_px']:+.2f} px",
                     fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(-1.05 * ymax, 1.05 * ymax)
    for ax in axes[-1]:
        ax.set_xlabel(f"defocus ({units})", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("disparity (px)", fontsize=8)
    axes[0, 0].legend(fontsize=6, loc="upper right")
    fig.suptitle(f"disparity vs defocus per cell ({cal['kind']}; shaded band: fitted range |d| <= {limit:g} px)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    _confidence_colorbar(fig, cax=fig.add_axes((0.92, 0.15, 0.015, 0.7)))
    files.append(out / "fits.png")
    fig.savefig(files[-1], dpi=90)
    plt.close(fig)

    # -- heat maps -------------------------------------------------------------
    maps = [("DCC", np.array([c["dcc_units_per_px"] for c in cells]), f"{units} per px"),
            ("offset", o_all, "px"),
            ("residual RMS", np.array([c["residual_rms_px"] for c in cells]), "px")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), squeeze=False)
    for ax, (name, v, unit) in zip(axes[0], maps):
        im = ax.imshow(v.reshape(R, C), extent=(0, W, H, 0), cmap="coolwarm" if name == "offset" else "viridis",
                       interpolation="nearest")
        for c, val in zip(cells, v):
            cy, cx = (c["y0"] + c["y1"]) / 2, (c["x0"] + c["x1"]) / 2
            ax.text(cx, cy, f"{val:.3g}" + ("*" if c.get("borrowed") else ""), ha="center", va="center", fontsize=8,
                    color="w" if name != "offset" else "k")
        ax.set_title(f"{name} ({unit})", fontsize=10)
        ax.set_xlabel("x on the sensor (px)")
        ax.set_ylabel("y (px)")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("per-block maps over the full sensor (* = borrowed from neighbours)", fontsize=10)
    fig.tight_layout()
    files.append(out / "maps.png")
    fig.savefig(files[-1], dpi=90)
    plt.close(fig)

    # -- residuals ---------------------------------------------------------------
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    clip = RESIDUAL_CLIP_PX
    n_clipped = n_res = 0
    if x.size:
        ok = (cid >= 0) & (cid < len(cells))
        res = d[ok] - (g_all[cid[ok]] * x[ok] + o_all[cid[ok]])
        inr = np.abs(d[ok]) <= limit
        far = np.abs(res) > clip
        n_clipped, n_res = int(far.sum()), int(res.size)
        shown = np.clip(res, -clip, clip)  # points beyond the axis are drawn on its edge, as triangles
        for sel, marker in ((~far, "o"), (far, "^")):
            axes[0].scatter(x[ok][inr & sel], shown[inr & sel], s=4 if marker == "o" else 14, marker=marker,
                            c=conf[ok][inr & sel], cmap="viridis", vmin=0, vmax=1, linewidths=0)
            axes[0].scatter(x[ok][~inr & sel], shown[~inr & sel], s=4 if marker == "o" else 14, marker=marker, c="0.7",
                            linewidths=0, label="outside the fitted range" if marker == "o" else None)
        if n_clipped:
            axes[0].scatter([], [], s=14, marker="^", c="k", label=f"{n_clipped} beyond +-{clip:g} px, drawn at the edge")
        axes[0].set_ylim(-1.05 * clip, 1.05 * clip)
        axes[0].legend(fontsize=7, loc="upper left")  # "best" searches every point: slow, and warns
        n_hist = int((far & inr).sum())
        axes[1].hist(shown[inr], bins=60, color="tab:blue")
        if n_hist:
            axes[1].set_title(f"the two outer bins also hold the {n_hist} residuals beyond +-{clip:g} px", fontsize=8)
    _confidence_colorbar(fig, ax=axes[0])
    axes[0].axhline(0, color="k", lw=0.6)
    axes[0].set_xlabel(f"defocus ({units})")
    axes[0].set_ylabel(f"disparity residual (px, clipped to +-{clip:g})")
    axes[1].set_xlabel("residual (px), points in the fitted range")
    axes[1].set_ylabel("count")
    fig.suptitle("residuals against each cell's fit", fontsize=10)
    fig.tight_layout()
    files.append(out / "residuals.png")
    fig.savefig(files[-1], dpi=90)
    plt.close(fig)

    files.append(out / "index.html")
    note = (f"{n_clipped} of {n_res} residuals lie beyond +-{clip:g} px: residuals.png draws them on the edge "
            "of its axis (triangles) and in the outer bins of its histogram." if n_clipped else
            f"All {n_res} residuals lie within +-{clip:g} px.")
    files[-1].write_text(_html(cal, cal_path, [f.name for f in files[:-1]], note), encoding="utf-8")
    return files


def _confidence_colorbar(fig, *, cax=None, ax=None) -> None:
    """The colour scale of the scatter points, estimator confidence 0..1 (viridis), in ``cax`` or beside ``ax``."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    sm = ScalarMappable(norm=Normalize(0, 1), cmap="viridis")
    fig.colorbar(sm, cax=cax, ax=ax, fraction=0.046, label="estimator confidence")


def _html(cal: dict[str, Any], cal_path: str | None, images: list[str], residual_note: str = "") -> str:
    e = html.escape
    units = cal["lens_units"]
    gf = cal["global_fit"]
    rows = "\n".join(
        f"<tr><td>{c['row']}</td><td>{c['col']}</td><td>{c['dcc_units_per_px']:.4g}</td><td>{c['gain_px_per_slice']:.4g}</td>"
        f"<td>{c['offset_px']:+.3f}</td><td>{c['residual_rms_px']:.3f}</td><td>{c['n_points']}</td><td>{c['r2']:.3f}</td>"
        f"<td>{'yes ' + e(str(c.get('borrowed_from'))) if c.get('borrowed') else ''}</td></tr>" for c in cal["cells"])
    ff = cal.get("flatfield")
    ff_text = f"{e(ff['path'])} (sha256 {e(ff['sha256'][:12])}...)" if ff else "none"
    imgs = "\n".join(f'<h2>{e(n)}</h2><p><img src="{e(n)}" style="max-width:100%"></p>' for n in images)
    est = cal["estimator"]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>hil-af calibration report</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}</style>
</head><body>
<h1>PDAF calibration report</h1>
<p>File: {e(str(cal_path or ''))}<br>
Kind: {e(cal['kind'])}, grid {cal['grid'][0]} x {cal['grid'][1]} over a {cal['sensor_hw'][1]} x {cal['sensor_hw'][0]} px sensor;
lens units: {e(units)}; slice spacing {cal['slice_spacing']:.4g} {e(units)}.<br>
Model: {e(cal.get('model', ''))}<br>
Estimator: {e(est['method'])}, max shift {est['max_shift_px']:g} px, min confidence {est.get('min_confidence', 0):g};
fitted range |disparity| &lt;= {cal.get('disparity_limit_px', est['max_shift_px']):g} px.<br>
Flat field: {ff_text}<br>
Global fit: DCC {gf['dcc_units_per_px']:.4g} {e(units)}/px, offset {gf['offset_px']:+.3f} px,
residual RMS {gf['residual_rms_px']:.3f} px, n {gf['n_points']}, R<sup>2</sup> {gf['r2']:.3f}.<br>
Points are coloured by the estimator's confidence (colour bar: 0..1). {e(residual_note)}</p>
<h2>Cells</h2>
<table><tr><th>row</th><th>col</th><th>DCC ({e(units)}/px)</th><th>gain (px/slice)</th><th>offset (px)</th>
<th>residual RMS (px)</th><th>n</th><th>R<sup>2</sup></th><th>borrowed from</th></tr>
{rows}
</table>
{imgs}
</body></html>
"""
