import gzip
import shutil

import pytest
import torch

from core import data as D


def test_mnist_loads_as_whole_uint8_tensors(mnist):
    assert mnist.train.images.shape == (60_000, 28, 28) and mnist.train.images.dtype == torch.uint8
    assert mnist.test.images.shape == (10_000, 28, 28)
    assert mnist.train.labels.dtype == torch.int64
    assert torch.bincount(mnist.test.labels).tolist()[:3] == [980, 1135, 1032]  # the official test split
    assert mnist.test.labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_mirror_import_into_an_empty_home(isolated_home, mirror_root):
    ds = D.load_dataset("fashion-mnist")
    assert len(ds.train) == 60_000 and len(ds.test) == 10_000
    assert (isolated_home / "torchvision" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").exists()
    assert (isolated_home / "cache" / "fashion-mnist.pt").exists()
    again = D.load_dataset("fashion-mnist")  # warm start from the tensor cache
    assert torch.equal(again.test.images, ds.test.images)


def _copy_mirror(src, dst):
    (dst / "mnist").mkdir(parents=True)
    for f in (src / "mnist").iterdir():
        shutil.copy(f, dst / "mnist" / f.name)
    return dst / "mnist"


def test_a_missing_mirror_file_is_named(isolated_home, mirror_root, tmp_path, monkeypatch):
    mirror = _copy_mirror(mirror_root, tmp_path / "mirror")
    (mirror / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("DIGITLAB_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(D.DataUnavailableError, match="t10k-labels-idx1-ubyte.gz"):
        D.load_dataset("mnist")


def test_a_mirror_file_with_the_wrong_magic_number_is_named(isolated_home, mirror_root, tmp_path, monkeypatch):
    mirror = _copy_mirror(mirror_root, tmp_path / "mirror")
    # swap images and labels: each then has the other's magic number
    labels = (mirror / "train-labels-idx1-ubyte.gz").read_bytes()
    (mirror / "train-images-idx3-ubyte.gz").write_bytes(labels)
    monkeypatch.setenv("DIGITLAB_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(D.DataUnavailableError, match="train-images-idx3-ubyte.gz has the wrong magic number 2049"):
        D.load_dataset("mnist")


def test_a_truncated_mirror_file_is_named(isolated_home, mirror_root, tmp_path, monkeypatch):
    mirror = _copy_mirror(mirror_root, tmp_path / "mirror")
    raw = gzip.decompress((mirror / "t10k-images-idx3-ubyte.gz").read_bytes())
    (mirror / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[: len(raw) // 2]))
    monkeypatch.setenv("DIGITLAB_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(D.DataUnavailableError, match="t10k-images-idx3-ubyte.gz is truncated"):
        D.load_dataset("mnist")
    # a cut gzip stream (not a cut idx file) is reported as corrupt
    (mirror / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw)[:5000])
    with pytest.raises(D.DataUnavailableError, match="t10k-images-idx3-ubyte.gz is corrupt"):
        D.load_dataset("mnist")


def test_a_missing_mirror_folder_says_what_to_do(isolated_home, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITLAB_MIRROR", str(tmp_path / "nowhere"))
    with pytest.raises(D.DataUnavailableError, match="DIGITLAB_MIRROR"):
        D.load_dataset("mnist")


def test_no_mirror_and_no_internet_is_a_clear_error(isolated_home, monkeypatch):
    import torchvision.datasets as tvd

    monkeypatch.delenv("DIGITLAB_MIRROR", raising=False)
    monkeypatch.setattr(tvd.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # nothing listens there
    with pytest.raises(D.DataUnavailableError, match="could not download .*DIGITLAB_MIRROR"):
        D.load_dataset("mnist")


def test_an_epoch_of_batches_visits_every_sample_once(mnist):
    split = mnist.train.subset(1000)
    sampler = D.BatchSampler(split, mnist.info, 64, generator=torch.Generator().manual_seed(0))
    batches = list(sampler)
    assert len(batches) == len(sampler) == 16 and len(batches[-1][1]) == 1000 - 15 * 64
    labels = torch.cat([y for _, y in batches])
    assert torch.equal(torch.sort(labels).values, torch.sort(split.labels).values)
    x = torch.cat([x for x, _ in batches])
    assert x.shape == (1000, 1, 28, 28)
    # normalised with the data set's statistics: background pixels map to -mean/std
    assert x.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)
    ref = D.normalize(split.images, mnist.info)
    assert torch.allclose(torch.sort(x.flatten()).values, torch.sort(ref.flatten()).values, atol=1e-5)


def test_augmentation_moves_each_image_differently(mnist):
    x = mnist.train.images[:64].unsqueeze(1).float()
    out = D.random_affine(x, D.Augment(thicken=0.0), torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    assert not torch.allclose(out, x)
    # per-sample parameters: the centre of mass moves by different amounts in different images
    ys = torch.arange(28.0).view(1, 1, 28, 1)
    shift = ((out * ys).sum((1, 2, 3)) / out.sum((1, 2, 3))) - ((x * ys).sum((1, 2, 3)) / x.sum((1, 2, 3)))
    assert shift.std() > 0.3
    # ink stays ink: the total brightness changes only by the scale factor and the border
    ratio = out.sum((1, 2, 3)) / x.sum((1, 2, 3))
    assert ((ratio > 0.5) & (ratio < 1.6)).all()
