"""Ordinal soft-label loss, networks and the MAC counter (torch: the [train] extra)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hil_af.model.loss import ordinal_ce, soft_targets  # noqa: E402
from hil_af.model.nets import build, count_macs, count_params  # noqa: E402


@pytest.mark.parametrize("T", [1.0, 0.5])
def test_soft_targets_sum_to_one_and_peak_at_gt(T):
    gt = torch.tensor([0, 7, 24, 48])
    y = soft_targets(gt, 49, T)
    assert y.shape == (4, 49)
    np.testing.assert_allclose(y.sum(1).numpy(), 1.0, atol=1e-6)
    assert y.argmax(1).tolist() == [0, 7, 24, 48]
    # symmetric around an interior gt, and follows exp(-(d^2)/T)
    assert y[2, 23] == pytest.approx(float(y[2, 25]))
    assert float(y[2, 25] / y[2, 24]) == pytest.approx(np.exp(-1 / T), rel=1e-5)


def test_lower_temperature_is_sharper():
    gt = torch.tensor([20])
    y1, y05 = soft_targets(gt, 49, 1.0), soft_targets(gt, 49, 0.5)
    assert float(y05[0, 20]) > float(y1[0, 20])
    ent = lambda y: float(-(y * torch.log(y.clamp_min(1e-30))).sum())  # noqa: E731
    assert ent(y05) < ent(y1)
    with pytest.raises(ValueError):
        soft_targets(gt, 49, 0.0)


def _logits(centres, T=1.0):  # log of the unnormalised target: softmax of it is soft_targets
    k = torch.arange(49, dtype=torch.float32)
    return -((torch.tensor(centres, dtype=torch.float32)[:, None] - k[None, :]) ** 2) / T


def test_loss_is_minimal_for_logits_matching_the_target():
    gt = torch.tensor([5, 30])
    np.testing.assert_allclose(torch.softmax(_logits([5, 30]), 1).numpy(), soft_targets(gt, 49, 1.0).numpy(), atol=1e-6)
    best = ordinal_ce(_logits([5, 30]), gt, 1.0)
    off = ordinal_ce(_logits([8, 33]), gt, 1.0)
    flat = ordinal_ce(torch.zeros(2, 49), gt, 1.0)
    assert float(best) < float(flat) and float(best) < float(off)
    # an ordinal loss: a prediction 2 slices off costs less than one 10 slices off
    far = ordinal_ce(_logits([15, 40]), gt, 1.0)
    assert float(off) < float(far)


def test_mcunet_meets_the_budget_and_mobilenet_is_bigger():
    m = build("mcunet", 49)
    params, macs = count_params(m), count_macs(m)
    assert params <= 600_000 and 2 * macs <= 50_000_000
    mb = build("mobilenetv2", 49)
    assert count_params(mb) > 2_000_000  # width-1.0 MobileNet-v2 body (~2.2 M) + 1280x49 head
    for net in (m, mb):
        net.eval()
        assert net(torch.randn(3, 5, 64, 64)).shape == (3, 49)


def test_mac_counter_on_hand_computed_layers():
    net = torch.nn.Sequential(torch.nn.Conv2d(5, 8, 3, 2, 1), torch.nn.Conv2d(8, 8, 3, 1, 1, groups=8),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10))
    # conv s2 on 64x64 -> 32x32: 32*32*8*5*9; depthwise: 32*32*8*1*9; linear 8*10
    assert count_macs(net) == 32 * 32 * 8 * 5 * 9 + 32 * 32 * 8 * 9 + 80


@pytest.mark.parametrize("arch", ["mcunet-lite", "mcunet-tiny"])
def test_cheaper_stems_differ_from_the_plain_model_only_in_the_stem(arch):
    """mcunet-lite / mcunet-tiny (hil_af/model/nets.py): the plain model with a cheaper stem; every
    layer after the stem, the head and the lens shift are the same shapes."""
    plain, cheap = build("mcunet-plain", 49), build(arch, 49)  # features[0:2] is the stem in all three
    tail_p = {k: v.shape for k, v in plain.state_dict().items() if not k.startswith(("features.0.", "features.1."))}
    tail_c = {k: v.shape for k, v in cheap.state_dict().items() if not k.startswith(("features.0.", "features.1."))}
    assert tail_p == tail_c
    assert len(plain.features) == len(cheap.features)
    cheap.eval()
    assert cheap(torch.randn(3, 5, 64, 64)).shape == (3, 49)


def test_cheaper_stems_cost_what_their_layers_say():
    """The MACs the stems save, by hand: plain = 64x64x12x5x9 (3x3 s1) + 32x32x16x12x9 (3x3 s2);
    lite = 32x32x12x5x9 (3x3 s2) + 32x32x12x9 (depthwise) + 32x32x16x12 (1x1); tiny runs both 3x3
    convs at stride 2 (32x32 then 16x16), and every later layer at a quarter of the pixels."""
    plain, lite, tiny = (count_macs(build(a, 49)) for a in ("mcunet-plain", "mcunet-lite", "mcunet-tiny"))
    stem_plain = 64 * 64 * 12 * 5 * 9 + 32 * 32 * 16 * 12 * 9
    stem_lite = 32 * 32 * 12 * 5 * 9 + 32 * 32 * 12 * 9 + 32 * 32 * 16 * 12
    assert plain - lite == stem_plain - stem_lite
    stem_tiny = 32 * 32 * 12 * 5 * 9 + 16 * 16 * 16 * 12 * 9
    head = (160 + 3) * 128 + 128 * 97  # the MLP head (2n - 1 = 97 relative logits) does not depend on the pixels
    body_plain = plain - stem_plain - head
    assert tiny == stem_tiny + head + body_plain // 4


def test_unknown_stem_is_refused():
    from hil_af.errors import BadInput
    from hil_af.model.nets import MCUNetAF

    with pytest.raises(BadInput, match="unknown stem 'wide'"):
        MCUNetAF(49, corr=False, stem_mode="wide")
