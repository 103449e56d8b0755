"""Elastic distortion of MNIST's digits (core.canvasmodel.elastic), a variant the recipe can be measured with."""

import pytest
import torch

from core import canvasmodel as CM


def _digits() -> torch.Tensor:
    x = torch.zeros(4, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0  # a 1
    x[1, :, 6:9, 8:20] = 1.0  # a 7's bar
    return x


def test_no_displacement_gives_the_image_back():
    x = _digits()
    assert torch.allclose(CM.elastic(x, torch.Generator().manual_seed(0), alpha=0.0), x, atol=1e-5)


def test_each_image_gets_its_own_smooth_field_and_the_same_seed_the_same_one():
    x = _digits()
    a = CM.elastic(x, torch.Generator().manual_seed(3))
    b = CM.elastic(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[2], atol=1e-3)  # the same digit, warped two ways
    assert (a - x).abs().mean() > 0.01  # it moves ink
    mass = a.sum((1, 2, 3)) / x.sum((1, 2, 3))
    assert ((mass > 0.6) & (mass < 1.5)).all()  # a warp stretches and squeezes strokes; it never erases them


def test_the_command_refuses_an_elastic_share_outside_zero_to_one_before_training_anything(capsys):
    from core.cli import canvasmodel

    with pytest.raises(SystemExit) as exit_:
        canvasmodel.main(["--cross-validate", "3", "--elastic", "1.5"])
    assert exit_.value.code == 2 and "--elastic are shares between 0 and 1" in capsys.readouterr().err
