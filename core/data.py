"""MNIST and Fashion-MNIST as whole uint8 tensors, and fast batches over them.

The seed tutorial feeds its models through ``datasets.MNIST`` + ``ToTensor`` + ``DataLoader``,
which builds one PIL image per sample. Here a split is one ``uint8`` tensor of shape
``[N, 28, 28]`` that can live on the training device, and a batch is a slice of a random
permutation: no per-sample Python work at all.

Where the data comes from, in order:
1. the tensor cache (``<home>/cache/<name>.pt``), written after the first load, so a warm start
   takes milliseconds;
2. a local mirror folder of the four standard ``.gz`` files (``DIGITLAB_MIRROR``), imported
   through ``torchvision.datasets`` after checking each file;
3. torchvision's normal download.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from core import paths


class DataUnavailableError(RuntimeError):
    """The data set could not be found, read or downloaded. The message says what to do."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str  # the key used everywhere: "mnist" or "fashion-mnist"
    title: str
    torchvision_class: str  # the class name in torchvision.datasets
    classes: tuple[str, ...]
    mean: float  # of the training pixels in [0, 1], used to normalise
    std: float


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist", "MNIST (handwritten digits)", "MNIST",
        tuple(str(d) for d in range(10)), 0.1307, 0.3081,
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "Fashion-MNIST (clothing)", "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"), 0.2860, 0.3530,
    ),
}

# The four standard files: (name, idx magic number, item shape)
_FILES = (
    ("train-images-idx3-ubyte", 2051, (28, 28)),
    ("train-labels-idx1-ubyte", 2049, ()),
    ("t10k-images-idx3-ubyte", 2051, (28, 28)),
    ("t10k-labels-idx1-ubyte", 2049, ()),
)
_CACHE_VERSION = 1


def dataset_info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}") from None


@dataclass
class Split:
    """One split of a data set: images ``[N, 28, 28]`` uint8 and labels ``[N]`` int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))

    def subset(self, n: int) -> "Split":
        """The first ``n`` samples (for small lessons and fast tests)."""
        return Split(self.images[:n], self.labels[:n])


@dataclass
class Dataset:
    info: DatasetInfo
    train: Split
    test: Split

    def to(self, device: torch.device | str) -> "Dataset":
        return Dataset(self.info, self.train.to(device), self.test.to(device))


# ----------------------------------------------------------------------------- loading

def mirror_folder(name: str) -> Path | None:
    """The mirror folder for ``name`` if ``DIGITLAB_MIRROR`` is set.

    ``DIGITLAB_MIRROR`` names a folder with one subfolder per data set (``mnist/``,
    ``fashion-mnist/``), each holding the four standard ``.gz`` files.
    """
    root = os.environ.get("DIGITLAB_MIRROR", "").strip()
    if not root:
        return None
    return Path(root).expanduser() / name


def _read_idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> bytes:
    """Decompress and check one idx file; the error names the file and what is wrong."""
    if not path.exists():
        raise DataUnavailableError(
            f"missing data file {path}. A mirror folder needs all four files: "
            + ", ".join(f + ".gz" for f, _, _ in _FILES)
        )
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:  # bad gzip header, truncated stream, bad CRC
        raise DataUnavailableError(
            f"data file {path} is corrupt ({err}). Replace it with a fresh copy of the standard file."
        ) from None
    ndim = 1 + len(item_shape)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataUnavailableError(f"data file {path} is truncated (only {len(raw)} bytes).")
    found_magic = struct.unpack(">i", raw[:4])[0]
    if found_magic != magic:
        raise DataUnavailableError(
            f"data file {path} has the wrong magic number {found_magic} (expected {magic}): "
            "it is not an idx file of this kind. Check that the files are not swapped or damaged."
        )
    dims = struct.unpack(">" + "i" * ndim, raw[4:header])
    if tuple(dims[1:]) != item_shape:
        raise DataUnavailableError(f"data file {path} holds items of shape {dims[1:]}, expected {item_shape}.")
    expected = header + math.prod(dims)
    if len(raw) != expected:
        raise DataUnavailableError(
            f"data file {path} is truncated or padded: {len(raw)} bytes, expected {expected}. "
            "Replace it with a fresh copy."
        )
    return raw


def import_mirror(name: str, mirror: Path, root: Path) -> None:
    """Check the mirror's four files and lay them out where torchvision looks for them."""
    info = dataset_info(name)
    if not mirror.is_dir():
        raise DataUnavailableError(
            f"the data mirror folder {mirror} does not exist. Set DIGITLAB_MIRROR to a folder that holds "
            f"'{name}/' with the four standard .gz files, or unset it to download from the internet."
        )
    raw_dir = root / info.torchvision_class / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    for fname, magic, shape in _FILES:
        data = _read_idx(mirror / f"{fname}.gz", magic, shape)
        target = raw_dir / fname
        if not target.exists() or target.stat().st_size != len(data):
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)


def _load_torchvision(name: str, root: Path, download: bool) -> tuple[Split, Split]:
    import torchvision.datasets as tvd

    cls = getattr(tvd, dataset_info(name).torchvision_class)
    splits = []
    for train in (True, False):
        ds = cls(str(root), train=train, download=download)
        splits.append(Split(ds.data.contiguous(), ds.targets.long().contiguous()))
    return splits[0], splits[1]


def _cache_path(name: str) -> Path:
    return paths.home() / "cache" / f"{name}.pt"


_load_lock = threading.Lock()  # two runs starting at once must not import into the same files together


def load_dataset(name: str = "mnist", device: torch.device | str = "cpu") -> Dataset:
    """Load a data set as tensors on ``device``; see the module docstring for the sources."""
    with _load_lock:
        return _load_dataset(name).to(device)


def _load_dataset(name: str) -> Dataset:
    info = dataset_info(name)
    cache = _cache_path(name)
    if cache.exists():
        try:
            blob = torch.load(cache, weights_only=True)
            if blob.get("version") == _CACHE_VERSION:
                return Dataset(info, Split(blob["train_x"], blob["train_y"]), Split(blob["test_x"], blob["test_y"]))
        except Exception:  # a damaged cache is rebuilt from the source
            pass

    root = paths.home() / "torchvision"
    mirror = mirror_folder(name)
    if mirror is not None:
        import_mirror(name, mirror, root)
        train, test = _load_torchvision(name, root, download=False)
    else:
        try:
            train, test = _load_torchvision(name, root, download=True)
        except Exception as err:
            why = " ".join(str(err).split())[:300]
            raise DataUnavailableError(
                f"could not download {info.title} ({why}). Without internet, point "
                "DIGITLAB_MIRROR at a folder holding "
                f"'{name}/' with the four standard .gz files, e.g. DIGITLAB_MIRROR=../shared/data"
            ) from None

    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")  # unique per process: servers can share a home
    torch.save({"version": _CACHE_VERSION, "train_x": train.images, "train_y": train.labels,
                "test_x": test.images, "test_y": test.labels}, tmp)
    os.replace(tmp, cache)
    return Dataset(info, train, test)


def clear_cache(name: str) -> None:
    cache = _cache_path(name)
    cache.unlink(missing_ok=True)
    shutil.rmtree(paths.home() / "torchvision" / dataset_info(name).torchvision_class, ignore_errors=True)


# ----------------------------------------------------------------------------- batches

def normalize(images_u8: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """uint8 ``[B, 28, 28]`` -> float ``[B, 1, 28, 28]``, normalised as in training."""
    x = images_u8.unsqueeze(1).float().div_(255.0)
    return x.sub_(info.mean).div_(info.std)


@dataclass(frozen=True)
class Augment:
    """Random affine distortion of each image, sized for digits drawn with a mouse."""

    degrees: float = 12.0  # rotation either way; more turns 6 into 9-ish shapes
    translate: float = 0.12  # fraction of the image; drawn digits are centred only roughly
    scale: tuple[float, float] = (0.85, 1.15)
    shear: float = 10.0  # degrees; people slant their digits
    thicken: float = 0.3  # probability of a 3x3 dilation: mouse strokes are thicker than pen strokes


def random_affine(x: torch.Tensor, aug: Augment, generator: torch.Generator | None) -> torch.Tensor:
    """Apply an independent random affine map to every image of ``x`` ``[B, 1, H, W]``.

    One ``affine_grid`` + ``grid_sample`` call for the whole batch, so each sample gets its
    own rotation, shift, scale and shear (``transforms.v2.RandomAffine`` draws one set of
    parameters per call, which would distort a whole batch the same way).
    """
    b, dev = x.shape[0], x.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        gdev = dev if generator is None else generator.device
        return torch.rand(b, generator=generator, device=gdev).to(dev) * (hi - lo) + lo

    angle = torch.deg2rad(uniform(-aug.degrees, aug.degrees))
    shear = torch.deg2rad(uniform(-aug.shear, aug.shear))
    scale = uniform(*aug.scale)
    tx, ty = uniform(-aug.translate, aug.translate) * 2, uniform(-aug.translate, aug.translate) * 2
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # inverse map (output -> input coordinates): rotation * shear, divided by scale
    theta = torch.stack([
        torch.stack([cos / scale, (cos * tan - sin) / scale, tx], 1),
        torch.stack([sin / scale, (sin * tan + cos) / scale, ty], 1),
    ], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if aug.thicken > 0:
        pick = uniform(0, 1) < aug.thicken
        if bool(pick.any()):
            out[pick] = F.max_pool2d(out[pick], 3, stride=1, padding=1)
    return out


# How many images a model scores at once when it only answers (no gradients). On a CPU a small batch's
# activations stay in cache: the bundled model (three CNNs, nine readings an image) scores MNIST's test set
# 1.5x faster in batches of 128 than of 2,000 (``python -m bench --only classroom``). A GPU wants large ones.
CPU_SCORING_BATCH = 128
ACCELERATOR_SCORING_BATCH = 2000


def scoring_batch(device: torch.device | str) -> int:
    """Images to score at once on ``device`` (evaluation and checks, never training)."""
    return CPU_SCORING_BATCH if torch.device(device).type == "cpu" else ACCELERATOR_SCORING_BATCH


class BatchSampler:
    """Batches of normalised images and labels from a ``Split`` held on one device.

    Each epoch is one random permutation; a batch is ``images[perm[i:i + batch_size]]``.
    The background is 0 before normalisation, so augmentation pads with real background.
    """

    def __init__(self, split: Split, info: DatasetInfo, batch_size: int, *, shuffle: bool = True,
                 augment: Augment | None = None, generator: torch.Generator | None = None,
                 drop_last: bool = False):
        if batch_size < 1:
            raise ValueError("batch size must be at least 1")
        self.split, self.info, self.batch_size = split, info, batch_size
        self.shuffle, self.augment, self.generator, self.drop_last = shuffle, augment, generator, drop_last
        # normalising (x/255 - mean)/std is one fused scale and shift
        self._scale = 1.0 / (255.0 * info.std)
        self._shift = -info.mean / info.std
        self._shift_t = torch.tensor(self._shift, dtype=torch.float32, device=split.images.device)

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n, dev = len(self.split), self.split.images.device
        if self.shuffle:
            gdev = self.generator.device if self.generator is not None else dev
            perm = torch.randperm(n, generator=self.generator, device=gdev).to(dev)
        else:
            perm = None
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min(n, (b + 1) * self.batch_size)
            if perm is None:
                xb, yb = self.split.images[lo:hi], self.split.labels[lo:hi]
            else:
                idx = perm[lo:hi]
                xb, yb = self.split.images[idx], self.split.labels[idx]
            if self.augment is None:  # one fused op: shift + scale * pixels, uint8 in, float out
                yield torch.add(self._shift_t, xb.unsqueeze(1), alpha=self._scale), yb
            else:
                x = random_affine(xb.unsqueeze(1).float(), self.augment, self.generator)
                yield x.mul_(self._scale).add_(self._shift), yb
