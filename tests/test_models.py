import pytest
import torch

from core import models as M


def test_seed_models_have_the_seed_shapes_and_parameter_counts():
    mlp, cnn = M.build_model(M.MLPConfig()), M.build_model(M.CNNConfig())
    assert isinstance(mlp, M.SeedMLP) and isinstance(cnn, M.SeedCNN)
    # 784*128+128 + 128*64+64 + 64*10+10 and the LeNet-style layers of the seed
    assert M.count_parameters(mlp) == 109_386
    assert M.count_parameters(cnn) == 44_426
    x = torch.randn(5, 1, 28, 28)
    assert mlp(x).shape == (5, 10) and cnn(x).shape == (5, 10)
    # the same attribute names as the tutorial, so its state dicts load here
    assert list(mlp.state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]
    assert [k for k in cnn.state_dict() if k.endswith("weight")] == [
        "conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight"]
    assert cnn.conv1.weight.shape == (6, 1, 5, 5) and cnn.fc1.weight.shape == (120, 256)


@pytest.mark.parametrize("name", list(M.REGISTRY))
def test_every_registered_model_builds_and_runs(name):
    cfg = M.REGISTRY[name]
    model = M.build_model(cfg).eval()
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert M.config_from_dict(M.config_to_dict(cfg)) == cfg


def test_variants_change_what_they_say():
    wide = M.build_model(M.MLPConfig(hidden=(256,)))
    assert M.count_parameters(wide) == 784 * 256 + 256 + 256 * 10 + 10
    bn = M.build_model(M.CNNConfig(batch_norm=True))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules())
    drop = M.build_model(M.CNNConfig(dropout=0.5)).train()
    x = torch.randn(4, 1, 28, 28)
    assert not torch.equal(drop(x), drop(x))  # dropout is active in training mode


def test_registered_models_are_named_and_counted_from_their_configs():
    assert M.count_parameters(M.resolve("seed-cnn")) == 44_426
    assert M.describe(M.resolve("seed-mlp")) == "seed MLP"
    assert M.describe(M.resolve("wide-cnn")) == "CNN 16-32 / 128, batch norm, dropout 0.25"


@pytest.mark.parametrize("bad", [
    {"kind": "rnn"},
    {"kind": "mlp", "hidden": [0]},
    {"kind": "mlp", "hidden": "128"},
    {"kind": "cnn", "channels": [6, 16, 32]},
    {"kind": "mlp", "dropout": 1.5},
    {"kind": "mlp", "evil": 1},
    {"kind": "cnn", "convs": 3},
    {"kind": "cnn", "convs": True},
    {"kind": "cnn", "convs": "2"},
])
def test_invalid_model_configs_are_refused(bad):
    with pytest.raises(ValueError):
        M.config_from_dict(bad)


def test_a_cnn_with_two_convs_a_stage_adds_a_3x3_conv_after_each_5x5_and_says_so():
    one = M.CNNConfig(channels=(32, 64), fc=(128,), batch_norm=True)
    two = M.CNNConfig(channels=(32, 64), fc=(128,), batch_norm=True, convs=2)
    model = M.build_model(two).eval()
    assert [tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Conv2d)] == [
        (32, 1, 5, 5), (32, 32, 3, 3), (64, 32, 5, 5), (64, 64, 3, 3)]
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    # the 3x3 convs (with their batch norms) are all it adds: the head sees the same 64 x 4 x 4
    assert M.count_parameters(two) - M.count_parameters(one) == 32 * 32 * 9 + 32 + 2 * 32 + 64 * 64 * 9 + 64 + 2 * 64
    assert M.describe(two) == "CNN 32-64 / 128, two convs a stage, batch norm"
    assert M.config_from_dict(M.config_to_dict(two)) == two and M.config_to_dict(two)["convs"] == 2
    assert "convs" not in M.config_to_dict(one)  # a checkpoint of one conv a stage is written as it always was


@pytest.mark.parametrize("cfg", [M.MLPConfig(), M.CNNConfig(), M.REGISTRY["deep-mlp"], M.REGISTRY["wide-cnn"],
                                 M.CNNConfig(channels=(8, 16), batch_norm=True, convs=2)])
def test_a_model_built_from_a_generator_has_the_weights_a_seeded_build_has(cfg):
    torch.manual_seed(5)
    seeded = M.build_model(cfg).state_dict()
    state = torch.get_rng_state()
    built = M.build_model(cfg, generator=torch.Generator().manual_seed(5)).state_dict()
    assert torch.equal(torch.get_rng_state(), state)  # the process-wide generator was not drawn from
    assert list(built) == list(seeded) and all(torch.equal(built[k], seeded[k]) for k in seeded)


def test_models_to_show_and_parameter_counts_draw_no_random_numbers():
    cfg = M.REGISTRY["wide-cnn"]
    trained = M.build_model(cfg).eval()
    state = torch.get_rng_state()
    shown = M.with_weights(cfg, trained.state_dict())
    assert M.count_parameters(cfg) == M.count_parameters(trained) == M.count_parameters(shown)
    assert torch.equal(torch.get_rng_state(), state)
    assert not shown.training
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(shown(x), trained(x))
    with torch.no_grad():
        next(shown.parameters()).add_(1.0)  # a copy: changing it leaves the weights it came from alone
    assert not torch.equal(next(shown.parameters()), next(trained.parameters()))


ENSEMBLE = M.EnsembleConfig(member=M.CNNConfig(channels=(8, 16), fc=(32,), batch_norm=True), count=3)


def test_an_ensemble_answers_with_its_members_mean_probabilities():
    model = M.build_model(ENSEMBLE, generator=torch.Generator().manual_seed(0)).eval()
    x = torch.randn(4, 1, 28, 28)
    mean = torch.stack([torch.softmax(m(x), 1) for m in model.members]).mean(0)
    assert torch.allclose(torch.softmax(model(x), 1), mean, atol=1e-6)
    assert torch.allclose(model(x).exp(), mean, atol=1e-6)  # its logits are the log of that mean
    assert M.count_parameters(ENSEMBLE) == 3 * M.count_parameters(ENSEMBLE.member)
    assert M.describe(ENSEMBLE) == "3 × CNN 8-16 / 32, batch norm, probabilities averaged"


def test_an_ensemble_config_travels_as_plain_data_and_bad_ones_are_refused():
    d = M.config_to_dict(ENSEMBLE)
    assert d == {"member": {"channels": [8, 16], "fc": [32], "dropout": 0.0, "batch_norm": True, "kind": "cnn"},
                 "count": 3, "kind": "ensemble"}
    assert M.config_from_dict(d) == ENSEMBLE
    for bad in ({**d, "count": 1}, {**d, "count": 9}, {**d, "count": True}, {**d, "count": "3"},
                {**d, "member": {**d["member"], "kind": "ensemble"}}, {**d, "member": None}, {**d, "extra": 1}):
        with pytest.raises(ValueError):
            M.config_from_dict(bad)


TILTING = M.EnsembleConfig(member=ENSEMBLE.member, count=2, tilts=(8.0, -8.0))


def test_tilting_moves_pixels_about_the_centre_and_fills_from_the_edge():
    x = torch.zeros(2, 1, 28, 28)
    x[0, 0, 3:9, 5:7] = 1.0  # a bar near the top left; the second image is background only
    x[1] -= 0.42  # background as MNIST's normalisation leaves it
    quarter = M.tilted(x, 90.0)  # pixel centres land on pixel centres: an exact quarter turn, anticlockwise
    assert torch.allclose(quarter[0, 0], torch.rot90(x[0, 0], 1), atol=1e-5)
    assert torch.allclose(M.tilted(x, 8.0)[1], x[1])  # nothing but background comes in from beyond the edge
    small = M.tilted(x, 8.0)[0, 0]
    assert 0.9 < small.sum() / x[0, 0].sum() < 1.1 and not torch.allclose(small, x[0, 0], atol=0.1)
    assert torch.allclose(M.tilted(M.tilted(x, 8.0), -8.0)[0, 0, 14], x[0, 0, 14], atol=1e-5)  # untouched rows stay


def test_an_ensemble_with_tilts_averages_every_member_over_every_view_when_answering_only():
    model = M.build_model(TILTING, generator=torch.Generator().manual_seed(0)).eval()
    x = torch.randn(3, 1, 28, 28)
    views = [x, M.tilted(x, 8.0), M.tilted(x, -8.0)]
    mean = torch.stack([torch.softmax(m(v), 1) for m in model.members for v in views]).mean(0)
    assert torch.allclose(model(x).exp(), mean, atol=1e-6)
    plain = M.with_weights(M.EnsembleConfig(member=TILTING.member, count=2), model.state_dict())
    assert not torch.allclose(model(x), plain(x), atol=1e-4)  # the views change the answer
    model.train(), plain.train()
    torch.manual_seed(1)
    trained = model(x)
    torch.manual_seed(1)
    assert torch.allclose(trained, plain(x))  # learning reads each drawing once, as it is
    assert M.describe(TILTING) == "2 × CNN 8-16 / 32, batch norm, probabilities averaged, also read tilted ±8°"
    assert M.tilts_text((5.0, -10.0)) == "+5°, -10°"


def test_tilts_travel_with_the_config_and_bad_ones_are_refused():
    d = M.config_to_dict(TILTING)
    assert d["tilts"] == [8.0, -8.0] and M.config_from_dict(d) == TILTING
    assert "tilts" not in M.config_to_dict(ENSEMBLE)  # an ensemble without reads as it always did
    for bad in ([0], [50], [-45.5], ["8"], [True], [1, 2, 3, 4, 5], "8", None, [float("nan")]):
        with pytest.raises(ValueError):
            M.config_from_dict({**d, "tilts": bad})


def test_an_ensemble_is_looked_into_through_its_first_member():
    import numpy as np

    from core import insight

    model = M.build_model(ENSEMBLE).eval()
    net, note = insight.looked_into(model)
    assert net is model.members[0] and "3 networks" in note
    maps = insight.feature_maps(model, np.zeros((28, 28), np.float32))
    assert [name for name, _ in maps] == ["conv1", "pool1", "conv2", "pool2"]
    assert insight.conv_filters(model).shape == (8, 5, 5)
    assert insight.looked_into(M.build_model(M.CNNConfig()))[1] == ""
