"""The seed tutorial's two networks, exactly as it defines them, and configurable variants.

``SeedMLP`` and ``SeedCNN`` are the tutorial's ``Net`` and ``ConvNet`` line for line (same
attribute names, so their state dicts match the tutorial's). ``MLP`` and ``CNN`` take a
config dataclass and add what a student may want to try: widths, channels, dropout,
batch norm. ``build_model`` returns the seed class when the config is the seed's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Union

import torch
import torch.nn as nn


class SeedMLP(nn.Module):
    """The seed's fully connected net: 784-128-64-10 with ReLU."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = x.view(-1, 784)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        x = self.fc3(x)
        return x


class SeedCNN(nn.Module):
    """The seed's LeNet-style CNN: conv 1->6 k5, pool, conv 6->16 k5, pool, fc 256-120-84-10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.pool(self.relu(self.conv1(x)))  # [B, 6, 12, 12]
        x = self.pool(self.relu(self.conv2(x)))  # [B, 16, 4, 4]
        x = x.view(-1, 16 * 4 * 4)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        x = self.fc3(x)
        return x


@dataclass(frozen=True)
class MLPConfig:
    hidden: tuple[int, ...] = (128, 64)  # the seed's widths
    dropout: float = 0.0  # after each hidden layer
    batch_norm: bool = False  # before each hidden ReLU
    kind: str = "mlp"


@dataclass(frozen=True)
class CNNConfig:
    channels: tuple[int, int] = (6, 16)  # the seed's two 5x5 conv layers
    fc: tuple[int, ...] = (120, 84)  # hidden widths of the classifier head
    dropout: float = 0.0  # before each fc layer
    batch_norm: bool = False  # after each conv
    convs: int = 1  # conv layers before each pool: 2 puts a 3x3 conv (padding 1, same width) after each 5x5
    kind: str = "cnn"


@dataclass(frozen=True)
class EnsembleConfig:
    """Several networks of one design, trained apart, answering together by averaging their probabilities.

    Members trained from different seeds make different mistakes; averaged, the mistakes of one are
    outvoted and the answer is less sure exactly where they disagree, which is what a drawing that
    is not a digit looks like.
    """

    member: Union[MLPConfig, CNNConfig] = CNNConfig()
    count: int = 3
    tilts: tuple[float, ...] = ()  # degrees: when answering, each member also reads the input tilted by these
    kind: str = "ensemble"


ModelConfig = Union[MLPConfig, CNNConfig, EnsembleConfig]
MAX_MEMBERS = 8
MAX_TILTS = 4  # extra views per member
MAX_TILT = 45.0  # degrees either way; nobody writes a digit tilted further


MAX_LAYERS = 8  # hidden layers of an MLP, fully connected layers of a CNN's head


def _check_tilts(tilts) -> None:
    if not isinstance(tilts, tuple) or len(tilts) > MAX_TILTS:
        raise ValueError(f"an ensemble reads its input tilted by at most {MAX_TILTS} angles")
    for a in tilts:
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 < abs(a) <= MAX_TILT:
            raise ValueError(f"a tilt is a non-zero angle of at most {MAX_TILT:g} degrees either way")


def _check(cfg: ModelConfig) -> None:
    if isinstance(cfg, EnsembleConfig):
        if not isinstance(cfg.member, (MLPConfig, CNNConfig)):
            raise ValueError("an ensemble's member is an MLP or a CNN")
        if isinstance(cfg.count, bool) or not isinstance(cfg.count, int) or not 2 <= cfg.count <= MAX_MEMBERS:
            raise ValueError(f"an ensemble has 2 to {MAX_MEMBERS} members")
        _check_tilts(cfg.tilts)
        _check(cfg.member)
        return
    widths = cfg.hidden if isinstance(cfg, MLPConfig) else tuple(cfg.channels) + tuple(cfg.fc)
    if isinstance(cfg, CNNConfig) and len(cfg.channels) != 2:
        raise ValueError("a CNN config has exactly two conv layers")
    if isinstance(cfg, CNNConfig) and (isinstance(cfg.convs, bool) or cfg.convs not in (1, 2)):
        raise ValueError("a CNN has 1 or 2 conv layers before each pool")
    if len(cfg.hidden if isinstance(cfg, MLPConfig) else cfg.fc) > MAX_LAYERS:
        raise ValueError(f"at most {MAX_LAYERS} hidden layers")
    if any(int(w) < 1 or int(w) > 4096 for w in widths):
        raise ValueError("layer widths must be between 1 and 4096")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ValueError("dropout must be in [0, 1)")


class MLP(nn.Module):
    def __init__(self, cfg: MLPConfig = MLPConfig()):
        super().__init__()
        _check(cfg)
        layers: list[nn.Module] = [nn.Flatten()]
        width = 784
        for h in cfg.hidden:
            layers.append(nn.Linear(width, h))
            if cfg.batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU())
            if cfg.dropout:
                layers.append(nn.Dropout(cfg.dropout))
            width = h
        layers.append(nn.Linear(width, 10))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class CNN(nn.Module):
    def __init__(self, cfg: CNNConfig = CNNConfig()):
        super().__init__()
        _check(cfg)
        c1, c2 = cfg.channels
        bn = (lambda c: nn.BatchNorm2d(c)) if cfg.batch_norm else (lambda c: nn.Identity())

        def stage(c_in: int, c: int) -> list[nn.Module]:  # the 5x5 conv, a 3x3 one after it when asked, the pool
            layers = [nn.Conv2d(c_in, c, 5), bn(c), nn.ReLU()]  # built in the order they run: seeded builds
            if cfg.convs == 2:  # draw their initial weights in that order too (``initialise``)
                layers += [nn.Conv2d(c, c, 3, padding=1), bn(c), nn.ReLU()]
            return layers + [nn.MaxPool2d(2, 2)]

        self.features = nn.Sequential(*stage(1, c1), *stage(c1, c2))  # [B, c1, 12, 12], then [B, c2, 4, 4]
        head: list[nn.Module] = [nn.Flatten()]
        width = c2 * 4 * 4
        for h in cfg.fc:
            if cfg.dropout:
                head.append(nn.Dropout(cfg.dropout))
            head += [nn.Linear(width, h), nn.ReLU()]
            width = h
        if cfg.dropout:
            head.append(nn.Dropout(cfg.dropout))
        head.append(nn.Linear(width, 10))
        self.classifier = nn.Sequential(*head)

    def forward(self, x):
        return self.classifier(self.features(x))


class Ensemble(nn.Module):
    """``count`` members of one config; the output is the log of their mean probabilities.

    Those are logits like any model's: their softmax is the members' average, and cross-entropy
    on them trains the ensemble as one model (fine-tuning does).

    With ``tilts``, each member answering (in eval mode) also reads the input tilted by each of
    those angles, and all those answers are averaged: a digit written at a slant is then read
    upright by some view. Training (``train()`` mode) reads the input as it is, once: it has its own
    random tilts, and the views would cost it as many times the time.
    """

    def __init__(self, cfg: EnsembleConfig = EnsembleConfig()):
        super().__init__()
        _check(cfg)
        self.members = nn.ModuleList(_construct(cfg.member) for _ in range(cfg.count))
        self.tilts = tuple(float(a) for a in cfg.tilts)

    def forward(self, x):
        tilts = () if self.training else self.tilts
        views = torch.cat([x] + [tilted(x, a) for a in tilts]) if tilts else x
        logp = torch.stack([torch.log_softmax(m(views), dim=1) for m in self.members])  # [members, views * n, k]
        answers = len(self.members) * (1 + len(tilts))
        logp = logp.reshape(answers, x.shape[0], logp.shape[-1])  # the views are blocks of n along the batch
        return torch.logsumexp(logp, dim=0) - math.log(answers)


def tilted(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Images [n, c, h, w] tilted by ``degrees`` about their centre (bilinear). What comes in from beyond the
    edge repeats the edge, which for a drawing is background, whatever the normalisation made of it.

    The sampling grid is written out rather than taken from ``F.affine_grid``: ONNX's opset 17, which
    exports use, has ``GridSample`` but not ``AffineGrid``."""
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    h, w = x.shape[-2], x.shape[-1]
    gx, gy = pixel_centres(h, w, x.dtype, x.device).unbind(-1)
    grid = torch.stack((c * gx - s * gy, s * gx + c * gy), dim=-1).unsqueeze(0).expand(x.shape[0], h, w, 2)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def pixel_centres(h: int, w: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """[h, w, 2]: each pixel's centre as (x, y) in [-1, 1], where ``grid_sample`` with ``align_corners=False``
    reads it; a sampling grid that leaves an image as it is."""
    ys = (torch.arange(h, dtype=dtype, device=device) * 2 + 1) / h - 1
    xs = (torch.arange(w, dtype=dtype, device=device) * 2 + 1) / w - 1
    return torch.stack((xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)), dim=-1)


def is_seed(cfg: ModelConfig) -> bool:
    if isinstance(cfg, EnsembleConfig):
        return False
    return cfg == (MLPConfig() if isinstance(cfg, MLPConfig) else CNNConfig())


def build_model(cfg: ModelConfig, *, generator: torch.Generator | None = None) -> nn.Module:
    """A freshly initialised model on the CPU.

    With ``generator`` (a CPU one), its initial weights are drawn from that generator alone, so
    a run's weights do not depend on what else in the process draws random numbers; they are
    the weights ``torch.manual_seed(s)`` and a plain build would give, for a generator seeded
    with ``s``. Without it, PyTorch's own initialisation draws from the process-wide generator.
    """
    if generator is None:
        return _construct(cfg)
    model = empty_model(cfg).to_empty(device="cpu")
    initialise(model, generator)
    return model


def _construct(cfg: ModelConfig) -> nn.Module:
    if isinstance(cfg, MLPConfig):
        return SeedMLP() if is_seed(cfg) else MLP(cfg)
    if isinstance(cfg, CNNConfig):
        return SeedCNN() if is_seed(cfg) else CNN(cfg)
    if isinstance(cfg, EnsembleConfig):
        return Ensemble(cfg)
    raise TypeError(f"not a model config: {cfg!r}")


def empty_model(cfg: ModelConfig) -> nn.Module:
    """The model's structure on the meta device: shapes only, no memory and no random numbers drawn."""
    with torch.device("meta"):
        return _construct(cfg)


def initialise(model: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation of every layer here, drawn from ``generator``, in construction order."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):  # what their reset_parameters() does, with a generator
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            bound = 1 / math.sqrt(m.weight[0].numel())  # 1 / sqrt(fan_in)
            nn.init.uniform_(m.bias, -bound, bound, generator=generator)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.reset_parameters()  # ones, zeros and fresh running statistics: nothing random
        elif any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False)):
            raise TypeError(f"no initialisation with a generator for {type(m).__name__}")


def with_weights(cfg: ModelConfig, state_dict: dict) -> nn.Module:
    """A model in eval mode holding a copy of ``state_dict``: for showing and predicting, never trained here.

    Built on the meta device and given the weights (``assign=True``), so nothing is initialised
    only to be overwritten and no random numbers are drawn: building one in a page or a sidebar
    cannot change a run training in the same process. The weights are copied, so training the
    model (fine-tuning does) leaves ``state_dict`` as it was.
    """
    model = empty_model(cfg)
    model.load_state_dict({k: v.detach().clone() for k, v in state_dict.items()}, assign=True)
    return model.eval()


def count_parameters(model_or_cfg: nn.Module | ModelConfig) -> int:
    """The number of weights a model learns; a config is counted on the meta device, without building it."""
    model = model_or_cfg if isinstance(model_or_cfg, nn.Module) else empty_model(model_or_cfg)
    return sum(p.numel() for p in model.parameters())


def tilts_text(tilts) -> str:
    """'±8°' for (8, -8); '+5°, -10°' when the tilts are not in pairs."""
    angles = sorted({abs(a) for a in tilts})
    if all(a in tilts and -a in tilts for a in angles):
        return ", ".join(f"±{a:g}°" for a in angles)
    return ", ".join(f"{a:+g}°" for a in tilts)


def describe(cfg: ModelConfig) -> str:
    """A short human name: 'seed CNN', 'CNN 16-32 / 128, batch norm, dropout 0.25'."""
    if isinstance(cfg, EnsembleConfig):
        views = f", also read tilted {tilts_text(cfg.tilts)}" if cfg.tilts else ""
        return f"{cfg.count} × {describe(cfg.member)}, probabilities averaged{views}"
    if is_seed(cfg):
        return "seed MLP" if isinstance(cfg, MLPConfig) else "seed CNN"
    if isinstance(cfg, MLPConfig):
        parts = ["MLP 784-" + "-".join(map(str, cfg.hidden)) + "-10"]
    else:
        parts = ["CNN " + "-".join(map(str, cfg.channels)) + " / " + "-".join(map(str, cfg.fc))]
        if cfg.convs == 2:
            parts.append("two convs a stage")
    if cfg.batch_norm:
        parts.append("batch norm")
    if cfg.dropout:
        parts.append(f"dropout {cfg.dropout:g}")
    return ", ".join(parts)


# ----------------------------------------------------------------------------- registry

REGISTRY: dict[str, ModelConfig] = {
    "seed-mlp": MLPConfig(),
    "seed-cnn": CNNConfig(),
    "wide-mlp": MLPConfig(hidden=(512, 256), dropout=0.2),
    "deep-mlp": MLPConfig(hidden=(256, 128, 64), batch_norm=True),
    "wide-cnn": CNNConfig(channels=(16, 32), fc=(128,), dropout=0.25, batch_norm=True),
}


def config_to_dict(cfg: ModelConfig) -> dict:
    if isinstance(cfg, EnsembleConfig):
        d = {"member": config_to_dict(cfg.member), "count": cfg.count, "kind": cfg.kind}
        if cfg.tilts:  # written only when there are any: an ensemble without reads as it always did
            d["tilts"] = list(cfg.tilts)
        return d
    d = asdict(cfg)
    if d.get("convs") == 1:  # written only when not 1: a CNN with one conv a stage reads as it always did
        del d["convs"]
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def config_from_dict(d: dict) -> ModelConfig:
    """Rebuild a config from plain data (a checkpoint, a URL); refuses unknown keys and kinds."""
    if not isinstance(d, dict):
        raise ValueError("a model config must be a mapping")
    kind = d.get("kind")
    if kind == "ensemble":
        return _ensemble_from_dict(d)
    cls = {"mlp": MLPConfig, "cnn": CNNConfig}.get(kind)
    if cls is None:
        raise ValueError(f"unknown model kind {kind!r}")
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown model config fields: {sorted(unknown)}")
    kwargs = {}
    for k, v in d.items():
        if k in ("hidden", "channels", "fc"):
            if not isinstance(v, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
                raise ValueError(f"model config field {k!r} must be a list of integers")
            v = tuple(v)
        elif k == "dropout":
            v = float(v)
        elif k == "batch_norm":
            v = bool(v)
        elif k == "convs" and (isinstance(v, bool) or not isinstance(v, int)):
            raise ValueError("model config field 'convs' must be an integer")
        kwargs[k] = v
    cfg = cls(**kwargs)
    _check(cfg)
    return cfg


def _ensemble_from_dict(d: dict) -> EnsembleConfig:
    unknown = set(d) - {"member", "count", "tilts", "kind"}
    if unknown:
        raise ValueError(f"unknown model config fields: {sorted(unknown)}")
    member = d.get("member")
    if not isinstance(member, dict) or member.get("kind") not in ("mlp", "cnn"):
        raise ValueError("an ensemble's member is an MLP or a CNN config")
    tilts = d.get("tilts", [])
    if not isinstance(tilts, list):
        raise ValueError("an ensemble's tilts are a list of angles")
    cfg = EnsembleConfig(member=config_from_dict(member), count=d.get("count"), tilts=tuple(tilts))
    _check(cfg)
    return cfg


def resolve(name_or_cfg: str | ModelConfig) -> ModelConfig:
    if isinstance(name_or_cfg, (MLPConfig, CNNConfig, EnsembleConfig)):
        return name_or_cfg
    try:
        return REGISTRY[name_or_cfg]
    except KeyError:
        raise ValueError(f"unknown model {name_or_cfg!r}; choose one of {', '.join(REGISTRY)}") from None


def example_input(batch: int = 1) -> torch.Tensor:
    return torch.zeros(batch, 1, 28, 28)
