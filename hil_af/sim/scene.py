"""Seeded textured scenes of fronto-parallel "cards" at known depths.

The view plane (H x W pixels) is cut into 3 x 4 cells, one per RoI of
``grid_rois((H, W), 3, 4)`` (and 2 x 2 of ``grid_rois((H, W), 6, 8)``);
every cell belongs to exactly one card (a card may span several neighbouring
cells), so every standard RoI, every 6 x 8 grid RoI, and the centre RoI (the
two middle cells of row 1 always share a card) lies on one depth.
Each card has a depth (dioptres = 1 / metres) and a reflectance texture in
[0, 1] with real high-frequency content: band-limited 1/f noise, rotated
checkers, "dead leaves" (occluding discs with sharp edges), or a mix.

Textures are generated once per scene for the padded plane
(H + 2 pad) x (W + 2 pad), so rendering a blurred cell never needs data
outside the texture.  Scene names: ``cards``, ``chart``, ``white``,
``flat-centre``, ``dark``, ``natural``, ``natural-soft`` (see ``SCENES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import BadInput

SCENES = {
    "cards": "random cards at random depths (seed-controlled)",
    "chart": "one textured plane at depth_m",
    "white": "uniform white target at depth_m (flat-field target)",
    "flat-centre": "cards, but the card under the centre RoI is uniform (no texture)",
    "dark": "cards at very low light (3% of the normal exposure)",
    "natural": "cards with occluders: about half the cells hold a nearer or farther object (disc or straight edge) "
               "covering 10-35 % of the cell away from its centre: depth edges inside RoIs",
    "natural-soft": "natural, but most cards' own texture is soft and faint (pre-blurred, contrast lowered; "
                    "SOFT_TEXTURE): in-scene sharpness and contrast no longer say how far the lens is from focus",
}

GRID = (3, 4)  # rows, cols of cells (= the standard RoI grid)


class SoftTexture(NamedTuple):
    """natural-soft, per card texture (occluders stay as natural): with probability p, a Gaussian
    pre-blur of sigma drawn from sigma_px and a contrast factor about the texture mean drawn from contrast."""

    p: float  # probability that a card's texture is softened
    sigma_px: tuple[float, float]  # Gaussian pre-blur sigma range, pixels
    contrast: tuple[float, float]  # contrast factor range about the texture mean


SOFT_TEXTURE = SoftTexture(p=0.7, sigma_px=(0.5, 3.0), contrast=(0.3, 1.0))
DARK_ILLUMINATION = 0.03


@dataclass
class Scene:
    """A rendered-once scene description.

    cell_y, cell_x: cell boundaries in view pixels, int [rows + 1], [cols + 1].
    card_of_cell: int [rows, cols], card index of each cell.
    card_dioptres: float64 [n_cards], depth of each card in dioptres (1/m).
    textures: float32 [n_cards, H + 2 pad, W + 2 pad], reflectance in [0, 1].
    illumination: scale on the exposure (1 normal, 0.03 for ``dark``).
    """

    name: str
    label: str
    seed: int
    pad: int
    cell_y: np.ndarray
    cell_x: np.ndarray
    card_of_cell: np.ndarray
    card_dioptres: np.ndarray
    textures: np.ndarray
    illumination: float = 1.0
    occ_of_cell: np.ndarray | None = None  # int [rows, cols]: occluder index per cell, -1 none
    occ_dioptres: np.ndarray | None = None  # float64 [n_occ]
    occ_textures: np.ndarray | None = None  # float32 [n_occ, H + 2 pad, W + 2 pad], premultiplied by the mask
    occ_masks: np.ndarray | None = None     # float32 [n_occ, H + 2 pad, W + 2 pad], coverage in [0, 1]

    @property
    def n_cards(self) -> int:
        return int(len(self.card_dioptres))

    def cell_at(self, y: float, x: float) -> tuple[int, int]:
        """(row, col) of the cell holding view pixel (y, x)."""
        r = int(np.clip(np.searchsorted(self.cell_y, y, side="right") - 1, 0, len(self.cell_y) - 2))
        c = int(np.clip(np.searchsorted(self.cell_x, x, side="right") - 1, 0, len(self.cell_x) - 2))
        return r, c

    def occluder_at(self, y: float, x: float) -> int:
        """Index of the occluder covering view pixel (y, x) (coverage > 0.5), else -1."""
        if self.occ_of_cell is None or self.occ_masks is None:
            return -1
        r, c = self.cell_at(y, x)
        j = int(self.occ_of_cell[r, c])
        H, W = self.occ_masks.shape[1] - 2 * self.pad, self.occ_masks.shape[2] - 2 * self.pad
        yi, xi = int(np.clip(y, 0, H - 1)) + self.pad, int(np.clip(x, 0, W - 1)) + self.pad
        return j if j >= 0 and self.occ_masks[j, yi, xi] > 0.5 else -1

    def dioptres_at(self, y: float, x: float) -> float:
        """Depth (dioptres) of what is seen at view pixel (y, x): an occluder, else the cell's card."""
        j = self.occluder_at(y, x)
        if j >= 0 and self.occ_dioptres is not None:
            return float(self.occ_dioptres[j])
        r, c = self.cell_at(y, x)
        return float(self.card_dioptres[self.card_of_cell[r, c]])

    def depth_map_dioptres(self, hw: tuple[int, int]) -> np.ndarray:
        """float32 [H, W] depth of every view pixel, dioptres."""
        out = np.empty(hw, np.float32)
        rows, cols = self.card_of_cell.shape
        for r in range(rows):
            for c in range(cols):
                out[self.cell_y[r] : self.cell_y[r + 1], self.cell_x[c] : self.cell_x[c + 1]] = self.card_dioptres[self.card_of_cell[r, c]]
        if self.occ_masks is not None and self.occ_dioptres is not None and self.occ_of_cell is not None:
            H, W = hw
            p = self.pad
            for (r, c), j in np.ndenumerate(self.occ_of_cell):
                if j < 0:
                    continue
                ys, xs = slice(self.cell_y[r], self.cell_y[r + 1]), slice(self.cell_x[c], self.cell_x[c + 1])
                m = self.occ_masks[j, p : p + H, p : p + W][ys, xs] > 0.5
                out[ys, xs][m] = self.occ_dioptres[j]
        return out


def cell_edges(hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell boundaries: every other boundary of the 6 x 8 grid (H//6, W//8 px cells), so that both
    ``grid_rois(hw, 3, 4)`` and ``grid_rois(hw, 6, 8)`` RoIs lie inside one cell (256 x 384:
    rows at 0, 84, 168, 256; columns at 0, 96, 192, 288, 384)."""
    H, W = hw
    rows, cols = GRID
    ys = np.array([r * 2 * (H // (2 * rows)) for r in range(rows)] + [H])
    xs = np.array([c * 2 * (W // (2 * cols)) for c in range(cols)] + [W])
    return ys, xs


# ----------------------------------------------------------------- textures


def _normalise(t: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = t - t.min()
    m = t.max()
    return (lo + (hi - lo) * (t / m if m > 0 else t)).astype(np.float32)


def texture_noise(rng: np.random.Generator, shape: tuple[int, int], beta: tuple[float, float] = (0.5, 1.0)) -> np.ndarray:
    """Band-limited noise of amplitude spectrum 1/f^beta (0.01..0.4 cycles/px, beta drawn from the
    range; natural images have beta ~ 1..1.5), reflectance ~[0.05, 0.95]."""
    h, w = shape
    spec = np.fft.rfft2(rng.standard_normal(shape))
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.hypot(fy, fx)
    b = float(rng.uniform(*beta))
    filt = np.where((f > 0.01) & (f < 0.4), 1.0 / np.maximum(f, 1e-3) ** b, 0.0)
    n = np.fft.irfft2(spec * filt, s=shape)
    n = (n - n.mean()) / (n.std() + 1e-12)
    c = rng.uniform(0.15, 0.25)
    return np.clip(0.5 + c * n, 0.05, 0.95).astype(np.float32)


def texture_checker(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Rotated checkerboard, period 6..20 px, sharp edges."""
    h, w = shape
    p = rng.uniform(6, 20)
    a = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = xx * np.cos(a) + yy * np.sin(a)
    v = -xx * np.sin(a) + yy * np.cos(a)
    s = np.sign(np.sin(2 * np.pi * u / p) * np.sin(2 * np.pi * v / p))
    c = rng.uniform(0.25, 0.4)
    return (0.5 + c * s).astype(np.float32)


def texture_dead_leaves(rng: np.random.Generator, shape: tuple[int, int], n: int = 700) -> np.ndarray:
    """Occluding discs of power-law radii (1.5..24 px) and random grey levels over a faint noise
    background (so no window is left textureless)."""
    h, w = shape
    out = 0.5 + 0.35 * (texture_noise(rng, shape) - 0.5)
    rmin, rmax = 1.5, 24.0
    radii = rmin / np.sqrt(1 - rng.uniform(0, 1 - (rmin / rmax) ** 2, n))  # density ~ 1/r^3
    cy = rng.uniform(0, h, n)
    cx = rng.uniform(0, w, n)
    grey = rng.uniform(0.05, 0.95, n).astype(np.float32)
    for r, y, x, g in zip(radii, cy, cx, grey):
        y0, y1 = max(int(y - r), 0), min(int(y + r) + 1, h)
        x0, x1 = max(int(x - r), 0), min(int(x + r) + 1, w)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        m = (yy - y) ** 2 + (xx - x) ** 2 <= r * r
        out[y0:y1, x0:x1][m] = g
    return out.astype(np.float32)


def texture_mixed(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    a = texture_dead_leaves(rng, shape, n=400)
    b = texture_noise(rng, shape)
    return np.clip(0.6 * a + 0.4 * b, 0.0, 1.0).astype(np.float32)


TEXTURES = (texture_noise, texture_checker, texture_dead_leaves, texture_mixed)
NATURAL_BETA = (1.0, 1.6)


def texture_natural(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Natural-image statistics: 1/f^beta noise with beta in NATURAL_BETA (most energy at low
    frequencies, as in photographs), half the time under dead-leaves occlusions (sharp edges)."""
    base = texture_noise(rng, shape, NATURAL_BETA)
    if rng.random() < 0.5:
        return base
    leaves = texture_dead_leaves(rng, shape, n=300)
    return np.clip(0.5 * base + 0.5 * leaves, 0.0, 1.0).astype(np.float32)


def soften(tex: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One texture [H, W] made soft and faint as SOFT_TEXTURE draws (or returned unchanged).

    A real scene holds intrinsically smooth, low-contrast surfaces (the real Pixel 4 cells: median
    contrast std/mean 0.12 against the sharp sim textures' 0.20), so a texture's own sharpness must
    not be a cue for focus: blurring here is in the scene, not the lens."""
    if rng.random() >= SOFT_TEXTURE.p:
        return tex
    sigma = float(rng.uniform(*SOFT_TEXTURE.sigma_px))
    c = float(rng.uniform(*SOFT_TEXTURE.contrast))
    fy = np.fft.fftfreq(tex.shape[0])[:, None]
    fx = np.fft.rfftfreq(tex.shape[1])[None, :]
    g = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))
    soft = np.fft.irfft2(np.fft.rfft2(tex) * g, s=tex.shape)
    m = float(soft.mean())
    return np.clip(m + c * (soft - m), 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------- scenes


def _random_cards(rng: np.random.Generator) -> np.ndarray:
    """card_of_cell [rows, cols]: cells merged at random with a neighbour; the centre pair always shares a card."""
    rows, cols = GRID
    lab = np.arange(rows * cols).reshape(rows, cols)
    for r in range(rows):
        for c in range(cols):
            u = rng.random()
            if c > 0 and u < 0.2:
                lab[lab == lab[r, c]] = lab[r, c - 1]
            elif r > 0 and u < 0.35:
                lab[lab == lab[r, c]] = lab[r - 1, c]
    lab[lab == lab[1, 2]] = lab[1, 1]  # the centre RoI straddles cells (1, 1) and (1, 2)
    _, inv = np.unique(lab, return_inverse=True)
    return inv.reshape(rows, cols)


def _occluders(rng: np.random.Generator, hw: tuple[int, int], pad: int, ys: np.ndarray, xs: np.ndarray,
               depth_range_m: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Occluders of the ``natural`` scene: per cell, with probability 1/2, a disc or a straight edge
    (anti-aliased, 4x supersampled coverage) of its own texture and depth, covering 10-35 % of the
    cell and never the middle third of the cell (so a standard RoI's centre stays on its card)."""
    H, W = hw
    rows, cols = GRID
    shape = (H + 2 * pad, W + 2 * pad)
    occ_of_cell = -np.ones(GRID, dtype=np.int64)
    masks: list[np.ndarray] = []
    texs: list[np.ndarray] = []
    dioptres: list[float] = []
    near, far = depth_range_m
    for r in range(rows):
        for c in range(cols):
            if rng.random() >= 0.5:
                continue
            y0, y1, x0, x1 = int(ys[r]), int(ys[r + 1]), int(xs[c]), int(xs[c + 1])
            h, w = y1 - y0, x1 - x0
            sy, sx = np.mgrid[0:4 * h, 0:4 * w].astype(np.float64)
            sy, sx = (sy + 0.5) / 4.0 - 0.5, (sx + 0.5) / 4.0 - 0.5  # cell pixel coordinates
            frac = rng.uniform(0.10, 0.35)
            if rng.random() < 0.5:  # a straight edge cutting off one side
                a = rng.uniform(0, 2 * np.pi)
                u = (sx - w / 2) * np.cos(a) + (sy - h / 2) * np.sin(a)
                thr = np.quantile(u, 1.0 - frac)
                fine = u > thr
            else:  # a disc centred on the cell border
                side = rng.integers(4)
                cy = [0.0, h - 1.0, rng.uniform(0, h), rng.uniform(0, h)][side]
                cx = [rng.uniform(0, w), rng.uniform(0, w), 0.0, w - 1.0][side]
                dist = np.hypot(sy - cy, sx - cx)
                fine = dist <= np.quantile(dist, frac)
            fine &= ~((np.abs(sy - h / 2) < h / 6) & (np.abs(sx - w / 2) < w / 6))
            cov = fine.reshape(h, 4, w, 4).mean(axis=(1, 3)).astype(np.float32)
            m = np.zeros(shape, np.float32)
            m[pad + y0 : pad + y1, pad + x0 : pad + x1] = cov
            occ_of_cell[r, c] = len(masks)
            masks.append(m)
            texs.append(texture_noise(rng, shape, NATURAL_BETA) * m)
            dioptres.append(rng.uniform(1.0 / far, 1.0 / near))
    if not masks:
        return occ_of_cell, np.zeros(0), np.zeros((0, *shape), np.float32), np.zeros((0, *shape), np.float32)
    return occ_of_cell, np.array(dioptres), np.stack(texs), np.stack(masks)


def make_scene(name: str, seed: int, hw: tuple[int, int], pad: int, depth_range_m: tuple[float, float],
               depth_m: float | None = None, label: str | None = None) -> Scene:
    """Build scene ``name`` (one of SCENES) deterministically from ``seed``.

    depth_range_m: (near, far) metres for random cards (depths uniform in dioptres).
    depth_m: depth of ``chart`` / ``white`` (default 1 m); ignored by card scenes.
    """
    if name not in SCENES:
        raise BadInput(f"unknown sim scene {name!r}; known: {', '.join(SCENES)}")
    if depth_m is not None and not (np.isfinite(depth_m) and depth_m > 0):
        raise BadInput(f"sim scene depth_m must be > 0 metres, got {depth_m}")
    seed = int(seed)
    rng = np.random.default_rng([seed, 0x5CE4E])
    H, W = hw
    ys, xs = cell_edges(hw)
    shape = (H + 2 * pad, W + 2 * pad)
    illumination = 1.0
    if name in ("chart", "white"):
        d = 1.0 / (depth_m if depth_m is not None else 1.0)
        card_of_cell = np.zeros(GRID, dtype=np.int64)
        dioptres = np.array([d])
        tex = np.ones((1, *shape), np.float32) if name == "white" else texture_mixed(rng, shape)[None]
        label = label or f"{name}@{1.0 / d:g}m"
    else:
        card_of_cell = _random_cards(rng)
        if name == "flat-centre":  # the centre pair becomes a card of its own (made uniform below)
            card_of_cell[1, 1:3] = card_of_cell.max() + 1
            _, inv = np.unique(card_of_cell, return_inverse=True)
            card_of_cell = inv.reshape(GRID)
        n = int(card_of_cell.max()) + 1
        near, far = depth_range_m
        dioptres = rng.uniform(1.0 / far, 1.0 / near, n)
        kinds = rng.integers(0, len(TEXTURES), n)
        if name in ("natural", "natural-soft"):
            tex = np.stack([texture_natural(rng, shape) for _ in kinds])
        else:
            tex = np.stack([TEXTURES[k](rng, shape) for k in kinds])
        if name == "flat-centre":
            tex[card_of_cell[1, 1]] = 0.5
        if name == "dark":
            illumination = DARK_ILLUMINATION
        label = label or f"{name}:{seed}"
        if name in ("natural", "natural-soft"):
            occ = _occluders(rng, hw, pad, ys, xs, depth_range_m)
            if name == "natural-soft":  # its own stream: the same cards, depths and textures as natural
                srng = np.random.default_rng([seed, 0x50F7])
                tex = np.stack([soften(t, srng) for t in tex])  # the cards; occluders stay as natural
            return Scene(name, label, seed, pad, ys, xs, card_of_cell, dioptres, tex, illumination, *occ)
    return Scene(name, label, seed, pad, ys, xs, card_of_cell, dioptres, tex, illumination)
