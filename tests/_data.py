"""Where the tests find data that is not in the repository.

``REALDP``: the real Pixel 4 dual-pixel captures (Xin et al., ICCV 2021) as
frame files ``001.npz`` .. ``004.npz``, their ground-truth defocus maps
``001_gt.npz`` .. (key ``defocus``) and a white sheet ``flatfield.npz``: the folder named by the environment variable
``HIL_AF_REALDP``, else ``shared/realdp`` beside the checkout.  Tests that need
it skip, naming the folder they looked in, when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

REALDP = Path(os.environ.get("HIL_AF_REALDP") or Path(__file__).resolve().parents[2] / "shared" / "realdp")
