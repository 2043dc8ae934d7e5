"""V4L2 focus control: ioctl numbers, struct layouts, range from QUERYCTRL, S/G_CTRL, faults.

The driver runs against FakeV4L2Subdev, which decodes the ioctl buffers with
its own copy of the kernel layouts; the URL test replaces only the os/fcntl
boundary (FcntlDevice's open + ioctl).
"""

from __future__ import annotations

import errno
import struct

import pytest

from hil_af.clock import SimClock
from hil_af.drivers import v4l2_ioctl as io
from hil_af.drivers.fakes import FakeV4L2Subdev
from hil_af.drivers.registry import open_lens
from hil_af.drivers.v4l2_lens import V4L2Lens
from hil_af.errors import BadInput, DeviceError


def test_ioctl_numbers_and_struct_sizes_match_the_kernel_headers():
    # values as printed by a C program including <linux/videodev2.h> on arm64/x86_64
    assert io.VIDIOC_G_CTRL == 0xC008561B
    assert io.VIDIOC_S_CTRL == 0xC008561C
    assert io.VIDIOC_QUERYCTRL == 0xC0445624
    assert io.V4L2_CONTROL.size == 8 and io.V4L2_QUERYCTRL.size == 68
    assert io.V4L2_CID_FOCUS_ABSOLUTE == 0x009A090A


def test_queryctrl_roundtrip_layout():
    q = io.QueryCtrl(0x009A090A, 1, "Focus, Absolute", 0, 1023, 1, 0, 0)
    raw = q.pack()
    assert raw[8:8 + 15] == b"Focus, Absolute"
    assert struct.unpack_from("=iiii", raw, 40) == (0, 1023, 1, 0)
    assert io.QueryCtrl.unpack(raw) == q


def test_range_from_queryctrl_and_moves_through_s_ctrl():
    dev = FakeV4L2Subdev(minimum=0, maximum=1023, default=250)
    lens = V4L2Lens(dev, path="/dev/v4l-subdev1", clock=SimClock())
    assert lens.range == (0.0, 1023.0)
    assert lens.position == 250  # G_CTRL on open
    lens.move_to(600.4)
    assert dev.value == 600 and lens.position == 600
    req, buf = dev.calls[-1]
    assert req == 0xC008561C and struct.unpack("=Ii", buf) == (0x009A090A, 600)
    dev.value = 601  # moved by someone else
    assert lens.read_position() == 601


def test_control_step_is_respected():
    dev = FakeV4L2Subdev(minimum=100, maximum=900, step=4, default=100)
    lens = V4L2Lens(dev, clock=SimClock())
    lens.move_to(203)
    assert dev.value == 204


@pytest.mark.parametrize("bad", [-1, 1024, float("nan"), "x"])
def test_out_of_range_rejected_without_ioctl(bad):
    dev = FakeV4L2Subdev()
    lens = V4L2Lens(dev, clock=SimClock())
    n = len(dev.calls)
    with pytest.raises(BadInput, match="v4l2"):
        lens.move_to(bad)
    assert len(dev.calls) == n


def test_wrong_subdev_without_focus_control_is_a_clear_error():
    dev = FakeV4L2Subdev(cid=0x00980900)  # a sensor subdev: brightness, no focus
    with pytest.raises(DeviceError, match="no control 0x009a090a.*not the lens sub-device"):
        V4L2Lens(dev, path="/dev/v4l-subdev0")
    assert dev.closed


def test_disabled_control_refused():
    with pytest.raises(DeviceError, match="disabled"):
        V4L2Lens(FakeV4L2Subdev(flags=io.V4L2_CTRL_FLAG_DISABLED))


def test_transient_ebusy_retried_then_persistent_failure_names_ioctl():
    dev = FakeV4L2Subdev()
    clock = SimClock()
    lens = V4L2Lens(dev, clock=clock, tries=3)
    dev.fail_next = 2
    lens.move_to(10)
    assert dev.value == 10 and clock.monotonic() == pytest.approx(0.003)
    dev.fail_next = 5
    with pytest.raises(DeviceError, match="VIDIOC_S_CTRL failed after 3 tries"):
        lens.move_to(11)
    dev.fail_next, dev.fail_errno = 1, errno.EPERM  # not transient: no retry
    with pytest.raises(DeviceError, match="after 1 tries"):
        lens.move_to(12)


def test_close_closes_the_node_once():
    dev = FakeV4L2Subdev()
    with V4L2Lens(dev) as lens:
        lens.move_to(5)
    assert dev.closed
    lens.close()
    with pytest.raises(DeviceError, match="closed"):
        lens.move_to(6)


def test_open_by_url_through_fcntl_boundary(mocker):
    dev = FakeV4L2Subdev(maximum=1023)
    opened = []
    mocker.patch("hil_af.drivers.v4l2_ioctl.os.open", side_effect=lambda p, flags: opened.append(p) or 42)
    mocker.patch("hil_af.drivers.v4l2_ioctl.os.close")
    mocker.patch("fcntl.ioctl", side_effect=lambda fd, req, buf, mut: dev.ioctl(req, buf))
    with open_lens("v4l2:///dev/v4l-subdev1?settle_ms=20", clock=SimClock()) as lens:
        assert lens.settle_time_s == pytest.approx(0.02)
        lens.move_to(512)
    assert opened == ["/dev/v4l-subdev1"] and dev.value == 512


@pytest.mark.parametrize("url,exc,msg", [
    ("v4l2://dev/v4l-subdev1", BadInput, "three slashes"),
    ("v4l2:///dev/v4l-subdev1?settle=3", BadInput, "unknown query parameter"),
    ("v4l2:///dev/v4l-subdev1?cid=zz", BadInput, "cid"),
    ("v4l2:///dev/no-such-subdev", DeviceError, "does not exist"),
])
def test_url_errors(url, exc, msg):
    with pytest.raises(exc, match=msg):
        open_lens(url)
