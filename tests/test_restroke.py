"""MNIST's digits re-drawn as a canvas draws them: thinned to a skeleton, then stroked with a round brush."""

import numpy as np
import torch

from core import restroke as R
from core.inference import stroke_width


def _bar(h=40, w=56, top=10, thickness=9):
    img = np.zeros((1, h, w), bool)
    img[0, top:top + thickness, 8:48] = True
    return img


def test_thinning_leaves_a_one_pixel_line_through_the_middle_of_a_thick_bar():
    skel = R.thin(_bar())[0]
    rows = np.nonzero(skel.any(1))[0]
    assert len(rows) == 1 and rows[0] == 14  # the bar's middle row, one pixel thick
    assert skel.sum() >= 30  # most of its length survives


def test_thinning_keeps_a_ring_closed():
    yy, xx = np.mgrid[:56, :56]
    r = np.hypot(yy - 28, xx - 28)
    skel = R.thin(((r > 10) & (r < 17))[None])[0]
    assert skel.sum() > 60
    assert not skel[28, 28] and skel[28, :28].any() and skel[28, 28:].any()  # a ring, not a dot
    # a closed loop still separates the inside from the outside: flood-filling from the centre never escapes
    inside, todo = np.zeros_like(skel), [(28, 28)]
    while todo:
        y, x = todo.pop()
        if not (0 <= y < 56 and 0 <= x < 56) or inside[y, x] or skel[y, x]:
            continue
        inside[y, x] = True
        todo += [(y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)]
    assert not inside[0, 0] and inside.sum() < 40 * 40


def test_a_wider_brush_draws_a_wider_stroke_in_the_same_place():
    digits = torch.zeros(3, 28, 28, dtype=torch.uint8)
    digits[:, 6:22, 12:16] = 255  # a thick upright 1
    skel = R.skeletons(digits)
    drawn = R.stroke(skel, torch.tensor(R.RADII))[:, 0].numpy()
    widths = [stroke_width((d > 0.5).astype(np.float32)) for d in drawn]
    assert widths[0] < widths[1] < widths[2]
    assert 0.8 <= widths[0] and widths[-1] <= 4.5  # the range a preprocessed canvas drawing has
    for d in drawn:  # centred where the scanned stroke was
        xs = np.nonzero(d.sum(0) > 0.5)[0]
        assert abs(xs.mean() - 13.5) <= 1.0


def test_a_training_step_with_restroke_feeds_the_network_mnist_redrawn_thin_and_without_it_the_scans():
    from types import SimpleNamespace

    from core import canvasmodel as CM
    from core.data import DATASETS

    images = torch.zeros(8, 28, 28, dtype=torch.uint8)
    images[:, 5:23, 11:17] = 200  # scanned 1s, 6 px wide
    mnist = SimpleNamespace(train=SimpleNamespace(images=images, labels=torch.ones(8, dtype=torch.long)))
    info = DATASETS["mnist"]

    class Probe(torch.nn.Module):  # records what the network is shown
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.zeros(10))
            self.seen = []

        def forward(self, x):
            self.seen.append(x * info.std + info.mean)
            return self.bias.expand(len(x), 10)

    def widths(share):
        data = CM._Data(mnist, torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long), torch.zeros(2, 1, 28, 28),
                        share, R.skeletons(images) if share else None)
        probe = Probe()
        CM._step(probe, torch.optim.SGD(probe.parameters(), lr=0.1), data, torch.arange(8),
                 torch.Generator().manual_seed(0), sizes=(8, 2, 2))
        return [stroke_width((x[0] > 0.4).numpy().astype(np.float32)) for x in probe.seen[0][:8]]

    redrawn, scanned = np.mean(widths(1.0)), np.mean(widths(0.0))
    assert redrawn < 0.7 * scanned and scanned > 4.5


def test_the_command_refuses_a_share_outside_zero_to_one_before_training_anything(capsys):
    import pytest

    from core.cli import canvasmodel

    with pytest.raises(SystemExit) as exit_:
        canvasmodel.main(["--cross-validate", "3", "--restroke", "1.5"])
    assert exit_.value.code == 2 and "--restroke and --elastic are shares between 0 and 1" in capsys.readouterr().err
