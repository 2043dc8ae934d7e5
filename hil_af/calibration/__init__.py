"""PDAF calibration: lens sweeps over scenes, per-block DCC fits, flat fields.

- ``capture``: sweeps over several scenes into focal stacks (resumable).
- ``fit``: per-cell (and global) robust fits of disparity vs defocus (DCC + offset).
- ``store``: the versioned, validated CAL.json.
- ``flatfield``: per-view gain maps (SPC) from a white target; FLAT.npz.
- ``predict``: ``PdafPredictor``, the in-focus position from one frame.
- ``report``: PNG plots and index.html (matplotlib, the ``[report]`` extra).
"""
