"""Looking inside a model: saliency, feature maps, filters, hidden units, and a test-set report.

Every function takes a model and plain arrays and returns plain arrays, so a page only lays
them out and a test can check what each one means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.data import DATASETS, BatchSampler, DatasetInfo, Split, scoring_batch
from core.inference import to_tensor
from core.models import Ensemble


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# ----------------------------------------------------------------------------- saliency

def gradient_saliency(model: nn.Module, image: np.ndarray, target: int, info: DatasetInfo = DATASETS["mnist"]) -> np.ndarray:
    """|d logit[target] / d pixel| for a 28x28 image in [0, 1]: which pixels push the answer."""
    return smoothgrad(model, image, target, info, samples=1, noise=0.0)


def smoothgrad(model: nn.Module, image: np.ndarray, target: int, info: DatasetInfo = DATASETS["mnist"],
               samples: int = 32, noise: float = 0.15, seed: int = 0) -> np.ndarray:
    """SmoothGrad (Smilkov et al. 2017): input gradients averaged over noisy copies of the image.

    ``noise`` is the standard deviation of the added noise as a share of the input's range.
    One batched forward and backward pass. Returns ``|mean gradient|`` as a float32 [28, 28].
    """
    was_training = model.training
    model.eval()
    try:
        x = to_tensor(image, info).to(_device(model))  # [1, 1, 28, 28], normalised
        x = x.repeat(samples, 1, 1, 1)
        if noise > 0:
            spread = noise * (x.max() - x.min()).item()
            gen = torch.Generator(device="cpu").manual_seed(seed)
            x = x + torch.randn(x.shape, generator=gen).to(x.device) * spread
        x.requires_grad_(True)
        logits = model(x)
        # autograd.grad leaves the parameters' .grad alone: another page may be using this model
        (grad,) = torch.autograd.grad(logits[:, target].sum(), x)
        grad = grad.mean(0)[0].abs()
    finally:
        model.train(was_training)
    return grad.detach().cpu().numpy().astype(np.float32)


# ----------------------------------------------------------------------------- inside the CNN

def looked_into(model: nn.Module) -> tuple[nn.Module, str]:
    """The network whose layers are shown, and a note when it is one of several: an ensemble's
    members all have the same layers, so its first member stands for them."""
    if isinstance(model, Ensemble):
        return model.members[0], f"the first of its {len(model.members)} networks (each has these layers)"
    return model, ""


def feature_maps(model: nn.Module, image: np.ndarray, info: DatasetInfo = DATASETS["mnist"]) -> list[tuple[str, np.ndarray]]:
    """The output of every conv and pool layer for one image, in the order they run.

    Conv outputs are before the ReLU; pool outputs come after ReLU and pooling. Each entry is
    ``(name, array [channels, h, w])``. For an ensemble, its first member's.
    """
    model = looked_into(model)[0]
    taken: list[tuple[str, torch.Tensor]] = []
    counts = {"conv": 0, "pool": 0}

    def hook(kind):
        def record(_module, _inputs, output):
            counts[kind] += 1
            taken.append((f"{kind}{counts[kind]}", output.detach()[0].cpu()))
        return record

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(hook("conv")))
        elif isinstance(m, nn.MaxPool2d):
            handles.append(m.register_forward_hook(hook("pool")))  # the seed's one pool module runs twice
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(to_tensor(image, info).to(_device(model)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [(name, t.numpy()) for name, t in taken]


def conv_filters(model: nn.Module) -> np.ndarray:
    """The first conv layer's kernels: [out_channels, k, k] (one input channel)."""
    conv = next((m for m in looked_into(model)[0].modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError("this model has no convolution layer")
    return conv.weight.detach().cpu()[:, 0].numpy()


# ----------------------------------------------------------------------------- inside the MLP

def _first_linear(model: nn.Module) -> nn.Linear:
    lin = next((m for m in looked_into(model)[0].modules() if isinstance(m, nn.Linear)), None)
    if lin is None or lin.in_features != 784:
        raise ValueError("this model does not start with a fully connected layer on the 784 pixels")
    return lin


def first_layer_weights(model: nn.Module) -> np.ndarray:
    """Each first-layer unit's weights as a 28x28 picture: what pattern it looks for. [units, 28, 28]."""
    return _first_linear(model).weight.detach().cpu().view(-1, 28, 28).numpy()


def hidden_activations(model: nn.Module, image: np.ndarray, info: DatasetInfo = DATASETS["mnist"]) -> np.ndarray:
    """How strongly each first-layer unit fires for this image: ReLU(W x + b), [units]."""
    lin = _first_linear(model)
    x = to_tensor(image, info).to(_device(model)).flatten(1)
    with torch.inference_mode():
        return F.relu(lin(x))[0].cpu().numpy()


# ----------------------------------------------------------------------------- test-set report

@dataclass
class Evaluation:
    labels: np.ndarray  # [N] true classes
    predictions: np.ndarray  # [N]
    confidence: np.ndarray  # [N] probability of the predicted class
    confusion: np.ndarray  # [10, 10]: rows are true classes, columns predictions

    @property
    def accuracy(self) -> float:
        return float((self.labels == self.predictions).mean())

    def per_class_accuracy(self) -> np.ndarray:
        totals = self.confusion.sum(1)
        return np.diag(self.confusion) / np.maximum(totals, 1)

    def cell(self, true: int, predicted: int) -> np.ndarray:
        """Indices of the test images of class ``true`` that the model called ``predicted``."""
        return np.flatnonzero((self.labels == true) & (self.predictions == predicted))

    def confident_mistakes(self, k: int = 24) -> np.ndarray:
        wrong = np.flatnonzero(self.labels != self.predictions)
        return wrong[np.argsort(-self.confidence[wrong])][:k]


@torch.inference_mode()
def evaluate_split(model: nn.Module, split: Split, info: DatasetInfo, batch_size: int | None = None) -> Evaluation:
    was_training = model.training
    model.eval()
    preds, confs = [], []
    device = _device(model)
    try:
        for x, _ in BatchSampler(split.to(device), info, batch_size or scoring_batch(device), shuffle=False):
            probs = F.softmax(model(x), dim=1)
            conf, pred = probs.max(1)
            preds.append(pred.cpu())
            confs.append(conf.cpu())
    finally:
        model.train(was_training)
    labels = split.labels.cpu().numpy()
    predictions = torch.cat(preds).numpy()
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    return Evaluation(labels, predictions, torch.cat(confs).numpy(), confusion)
