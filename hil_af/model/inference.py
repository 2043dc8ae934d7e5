"""Run the position-encoded AF model with onnxruntime (no torch at run time).

A model directory holds ``card.json`` (what the model expects: arch, n
slices, encoding config; see hil_af.model.card) and ``step1.onnx`` /
``step2.onnx`` (input ``x`` float32 [B, 5, S, S], output ``logits`` [B, n]).

``PEPredictor`` keeps one ``onnxruntime.InferenceSession`` per model for its
whole life and runs every RoI of a frame as one batch.  Decoding:
``expected`` = the softmax-weighted mean slice (sub-slice); ``index`` = it,
rounded (the slice the controller moves to); ``confidence`` = the softmax
mass within +-1 slice of ``index`` (in [0, 1]; ~1 for a sharp unimodal
prediction, low for a flat or multimodal one); ``argmax`` = the mode.

Any sweep length: the model's n output bins cover the swept lens range (bin j
is the fraction j/(n-1) of it) and its lens-PE input is the fraction of the
range of the current slice, so a model trained on 49-slice sweeps serves a
sweep of any m >= 2 slices: the softmax over the n bins is re-binned onto the
m slices (``rebin``: each bin's mass split linearly between the two slices
around its position) before decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInput, FormatError
from ..frames import DualPixelFrame, validate_rois
from .encoding import EncodingConfig, FlatField, encode_fitted, encode_frame_rois, fit_patch, model_windows

CARD = "card.json"
MAX_SWEEP = 4096  # slices; a sweep longer than this is not served (the controller falls back)


@dataclass
class PEPrediction:
    """Per-RoI decoded prediction: index int64 [P] (the decoded slice: the rounded mean),
    confidence float64 [P] in [0, 1], probs float32 [P, n] (softmax), expected float64 [P]
    (mean slice, sub-slice), argmax int64 [P] (the mode)."""

    index: np.ndarray
    confidence: np.ndarray
    probs: np.ndarray
    expected: np.ndarray
    argmax: np.ndarray


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def rebin(probs: np.ndarray, m: int) -> np.ndarray:
    """Distributions over n model bins [P, n] -> over m sweep slices [P, m] (module doc); identity when m = n."""
    probs = np.asarray(probs, dtype=np.float64)
    n = probs.shape[1]
    if m == n:
        return probs
    if m < 2 or n < 2:
        raise BadInput(f"cannot map {n} model bins onto a sweep of {m} slices (both need >= 2)")
    f = np.arange(n) * (m - 1) / (n - 1)
    lo = np.minimum(np.floor(f).astype(np.int64), m - 1)
    w = f - lo
    out = np.zeros((probs.shape[0], m))
    np.add.at(out.T, lo, (probs * (1.0 - w)).T)
    hi = np.minimum(lo + 1, m - 1)
    np.add.at(out.T, hi, (probs * w).T)
    return out


def decode(logits: np.ndarray, m: int | None = None) -> PEPrediction:
    """Logits [P, n] -> PEPrediction over ``m`` sweep slices (default n; see module doc).

    The decoded slice ``index`` is the softmax-weighted mean slice, rounded: the ordinal
    soft-label loss trains the softmax as a distribution over slices, and its mean is a better
    estimate of the in-focus slice than its mode (the argmax: kept as ``argmax``); measured in
    docs/model.md "Decoding".  ``confidence``: the mass within +-1 slice of ``index``."""
    p = softmax(np.asarray(logits, dtype=np.float64))
    if m is not None:
        p = rebin(p, int(m)).astype(np.float32)
    n = p.shape[1]
    expected = (p.astype(np.float64) * np.arange(n)[None, :]).sum(axis=1)
    idx = np.clip(np.rint(expected), 0, n - 1).astype(np.int64)
    cum = np.concatenate([np.zeros((p.shape[0], 1)), np.cumsum(p, axis=1, dtype=np.float64)], axis=1)
    lo = np.clip(idx - 1, 0, n - 1)
    hi = np.clip(idx + 1, 0, n - 1)
    conf = np.clip(cum[np.arange(len(idx)), hi + 1] - cum[np.arange(len(idx)), lo], 0.0, 1.0)
    return PEPrediction(index=idx, confidence=conf, probs=p, expected=expected,
                        argmax=p.argmax(axis=1).astype(np.int64))


def decoded_bins(logits: np.ndarray) -> np.ndarray:
    """The decoded model bin int64 [B] of logits [B, n]: the rounded softmax mean (``decode``'s
    ``index`` on the model's own n bins).  Training uses it for where step 1 leaves the lens."""
    p = softmax(np.asarray(logits, dtype=np.float64)).astype(np.float64)
    return np.clip(np.rint(p @ np.arange(p.shape[1], dtype=np.float64)), 0, p.shape[1] - 1).astype(np.int64)


def read_card(model_dir: Path) -> dict[str, Any]:
    """card.json of ``model_dir``; BadInput if missing, FormatError if unreadable or incomplete."""
    path = Path(model_dir) / CARD
    if not path.is_file():
        raise BadInput(f"model card {path} is missing (train a model with `hil-af train` or point --model at one)")
    from ..jsonread import load_json_file  # bounded, one-line errors (deep nesting, huge ints)

    card = load_json_file(path, "model card")
    for key in ("n_slices", "encoding", "files"):
        if not isinstance(card, dict) or key not in card:
            raise FormatError(f"model card {path} lacks the key {key!r}")
    n, enc, files = card["n_slices"], card["encoding"], card["files"]
    if not isinstance(n, int) or isinstance(n, bool) or not 2 <= n <= 1024:
        raise FormatError(f"model card {path}: n_slices must be an integer in 2..1024, got {n!r}")
    size = enc.get("size") if isinstance(enc, dict) else None
    if not isinstance(size, int) or isinstance(size, bool) or not 8 <= size <= 1024:
        raise FormatError(f"model card {path}: encoding must be an object with an integer size in 8..1024")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise FormatError(f"model card {path}: files must map model steps to file names (strings)")
    return card


class PEPredictor:
    """Step-1 or step-2 PE model of ``model_dir`` (default: hil_af.paths.models_dir()).

    threads: onnxruntime intra-op threads.  flatfield: optional callable applied to raw
    patches before encoding (see hil_af.model.encoding); default: the flat field the
    model was trained with (card ``flatfield``), if any."""

    def __init__(self, model_dir: str | Path | None = None, step: int = 1, threads: int = 1,
                 flatfield: FlatField | None = None):
        if step not in (1, 2):
            raise BadInput(f"PE model step must be 1 or 2, got {step}")
        if model_dir is None:
            from ..paths import models_dir

            model_dir = models_dir()
        self.model_dir = Path(model_dir)
        self.step = step
        self.card = read_card(self.model_dir)
        card_path = self.model_dir / CARD
        try:
            self.encoding = EncodingConfig.from_dict(self.card["encoding"])
            self.n_slices = int(self.card["n_slices"])
            fname = self.card["files"][f"step{step}"]
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError(f"model card {card_path}: bad encoding/files/n_slices entry: {e}") from e
        self.path = self.model_dir / fname
        if flatfield is None and self.card.get("flatfield"):  # trained on flat-fielded views: use its own
            from ..calibration.flatfield import load_flatfield

            flatfield = load_flatfield(self.model_dir / self.card["flatfield"]["file"])
        self.flatfield = flatfield
        self.session = _open_session(self.path, threads)
        self._check_io()

    def _check_io(self) -> None:
        inp = self.session.get_inputs()[0]
        out = self.session.get_outputs()[0]
        self.input_name = inp.name
        S = self.encoding.size
        shape = list(inp.shape)
        if len(shape) != 4 or shape[1:] != [5, S, S]:
            raise FormatError(f"{self.path}: model input shape {shape} does not match card.json (expects [B, 5, {S}, {S}])")
        oshape = list(out.shape)
        if len(oshape) != 2 or oshape[1] != self.n_slices:
            raise FormatError(f"{self.path}: model output shape {oshape} does not match card.json n_slices={self.n_slices}")

    def _check_n(self, n_slices: int) -> None:
        """Any sweep of 2..MAX_SWEEP slices is served (module doc); BadInput otherwise."""
        if not 2 <= int(n_slices) <= MAX_SWEEP:
            raise BadInput(f"model {self.path} serves sweeps of 2..{MAX_SWEEP} slices, the sweep has {n_slices}")

    def run(self, x: np.ndarray) -> np.ndarray:
        """Raw logits float32 [B, n] of encoded inputs x [B, 5, S, S]."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def windows(self, rois: Any, view_hw: tuple[int, int]) -> np.ndarray:
        """The view windows the model reads for RoIs int [P, 4] (``encoding.model_windows``: an RoI
        smaller than the input grows about its centre), int64 [P, 4]."""
        return model_windows(rois, int(self.encoding.size), view_hw, self.encoding.fit)

    def predict(self, frame: DualPixelFrame, rois: Any, slice_index: int, n_slices: int) -> PEPrediction:
        """Predict the in-focus slice of every RoI (view pixels, int32 [P, 4]) of one frame
        taken at slice ``slice_index`` of ``n_slices``: one batched onnxruntime call."""
        self._check_n(n_slices)
        rois = self.windows(validate_rois(rois, frame.shape), frame.shape)
        x = encode_frame_rois(frame.left, frame.right, rois, frame.origin, frame.sensor_hw or frame.shape,
                              int(slice_index), int(n_slices), self.encoding, self.flatfield)
        return decode(self.run(x), int(n_slices))

    def predict_patches(self, left: np.ndarray, right: np.ndarray, rois_full_xywh: np.ndarray,
                        sensor_hw: tuple[int, int], slice_index: Any, n_slices: int) -> PEPrediction:
        """Predict for B raw RoI patches (black-subtracted) left/right [B, h, w] whose RoIs on
        the FULL plane are ``rois_full_xywh`` int [B, 4] (w, h = patch size), taken at
        ``slice_index`` int [B] (or one int) of ``n_slices``."""
        self._check_n(n_slices)
        left = np.asarray(left)
        right = np.asarray(right)
        if left.ndim != 3 or left.shape != right.shape:
            raise BadInput(f"patches must be [B, h, w] of equal shape, got left {left.shape} right {right.shape}")
        B, h, w = left.shape
        rois = np.asarray(rois_full_xywh, dtype=np.int64).reshape(-1, 4)
        if len(rois) != B or np.any(rois[:, 2] != w) or np.any(rois[:, 3] != h):
            raise BadInput(f"rois_full_xywh must be [{B}, 4] with w={w}, h={h}; got {rois.tolist()}")
        cfg = self.encoding
        if self.flatfield is None and (h, w) == (cfg.size, cfg.size):
            pl, pr = np.asarray(left, np.float32), np.asarray(right, np.float32)  # fit_patch of a whole patch: itself
        else:
            local = np.array([0, 0, w, h])
            pls, prs = [], []
            for b in range(B):
                lp, rp = left[b], right[b]
                if self.flatfield is not None:
                    x0, y0, w0, h0 = (int(v) for v in rois[b])
                    lp, rp = self.flatfield(lp, rp, (x0, y0, w0, h0), (int(sensor_hw[0]), int(sensor_hw[1])))
                pls.append(fit_patch(lp, local, cfg.size, cfg.fit))
                prs.append(fit_patch(rp, local, cfg.size, cfg.fit))
            pl, pr = np.stack(pls), np.stack(prs)
        ks = np.broadcast_to(np.asarray(slice_index, dtype=np.int64), (B,))
        x = encode_fitted(pl, pr, rois, sensor_hw, ks, int(n_slices), cfg)
        return decode(self.run(x), int(n_slices))


def _open_session(path: Path, threads: int):
    import onnxruntime as ort

    if not path.is_file():
        raise BadInput(f"model file {path} is missing")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, int(threads))
    opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise FormatError(f"model file {path} cannot be loaded by onnxruntime: {type(e).__name__}: {e}") from e
