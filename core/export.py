"""Models out of Digit Lab: TorchScript and ONNX files that run without this project's code.

Inside Digit Lab a model takes pixels normalised with its data set's mean and std
(``core.inference.to_tensor``). An export must not ask that of anyone else, so it wraps the
model in ``Deployable``, which carries the normalisation as buffers. Every export therefore takes
what anyone has:

    pixels: float32 [batch, 1, 28, 28], values in [0, 1], white ink on black
            (MNIST's convention: 0 is background; a dark digit on paper is 1 - pixels)
    returns logits: float32 [batch, 10]; softmax gives the probabilities of the classes

The batch dimension is free. Each export is loaded back and must give the model's outputs on
drawn digits and noise before it is handed out.

ONNX goes through ``torch.onnx.export(dynamo=False)``, the TorchScript-based exporter that
PyTorch 2.14 still ships: it needs only ``onnx`` and takes a few hundredths of a second, where
``dynamo=True`` needs ``onnxscript`` as well and takes one to three seconds per model here.
"""

from __future__ import annotations

import functools
import io
import json
import re
import threading
import unicodedata
import warnings
from string import Template
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from core import models as M
from core.data import DatasetInfo, dataset_info
from core.values import is_number

ONNX_OPSET = 17  # widely supported by onnxruntime releases of the last years
INPUT = ("float32 [batch, 1, 28, 28] in [0, 1], white ink on black (MNIST's convention); "
         "the normalisation is inside the model")
OUTPUT = "logits float32 [batch, 10]; softmax gives the class probabilities"
_LOCK = threading.Lock()  # the exporters keep global state; downloads run on Streamlit's threads


class ExportError(RuntimeError):
    """An export did not reproduce the model's outputs; nothing is handed out."""


class Deployable(nn.Module):
    """Pixels in [0, 1] -> logits: the model with its data set's normalisation built in."""

    def __init__(self, model: nn.Module, info: DatasetInfo):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(info.mean))
        self.register_buffer("std", torch.tensor(info.std))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model((pixels - self.mean) / self.std)

    @classmethod
    def from_checkpoint(cls, ckpt) -> "Deployable":
        return cls(ckpt.build(), dataset_info(ckpt.dataset)).eval()


def metadata(ckpt) -> dict[str, str]:
    """What a file should say about itself: stored in the TorchScript and ONNX exports."""
    info = dataset_info(ckpt.dataset)
    acc = ckpt.metrics.get("test_acc")
    return {"name": ckpt.title, "model": ckpt.description, "dataset": ckpt.dataset,
            "classes": json.dumps(list(info.classes)), "mean": str(info.mean), "std": str(info.std),
            "input": INPUT, "output": OUTPUT, "created": ckpt.created,
            "test_accuracy": f"{acc:.4f}" if is_number(acc) else "unknown"}


def file_names(ckpt) -> dict[str, str]:
    """Download names from the model's name, reduced to safe ASCII: ``digitlab-seed-cnn.pt`` and so on."""
    text = unicodedata.normalize("NFKD", ckpt.title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60].strip("-") or "model"
    stem = f"digitlab-{slug}"
    return {"checkpoint": f"{stem}.pt", "torchscript": f"{stem}.torchscript.pt", "onnx": f"{stem}.onnx"}


@functools.lru_cache(maxsize=1)
def _probe() -> torch.Tensor:
    """Drawn digits as the canvas makes them, plus noise and a blank: what an export is checked on."""
    from core.drawn import preprocessed_drawn_set

    digits, _ = preprocessed_drawn_set(per_digit=2)
    noise = torch.rand(4, 28, 28, generator=torch.Generator().manual_seed(0))
    return torch.cat([torch.from_numpy(digits), noise, torch.zeros(1, 28, 28)]).unsqueeze(1)


def _check(net: Deployable, run: Callable[[np.ndarray], np.ndarray], what: str, atol: float) -> None:
    x = _probe()
    with torch.inference_mode():
        want = net(x).numpy()
        got = np.asarray(run(x.numpy()))
    if got.shape != want.shape or not np.allclose(got, want, atol=atol, rtol=1e-4):
        diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("nan")
        raise ExportError(f"the {what} export does not predict the same as the model (largest difference {diff:g})")


def torchscript_bytes(ckpt) -> bytes:
    """A traced ``Deployable``; ``torch.jit.load`` runs it with plain torch."""
    net = Deployable.from_checkpoint(ckpt)
    with _LOCK, warnings.catch_warnings():  # PyTorch steers towards torch.export; TorchScript still works
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(net, M.example_input(2))
        buf = io.BytesIO()
        torch.jit.save(traced, buf, _extra_files={"digitlab.json": json.dumps(metadata(ckpt))})
        data = buf.getvalue()
        reloaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
    _check(net, lambda x: reloaded(torch.from_numpy(x)).numpy(), "TorchScript", 1e-5)
    return data


def onnx_bytes(ckpt) -> bytes:
    """An ONNX model (opset 17, free batch size) with ``metadata`` in its metadata_props."""
    import onnx
    import onnxruntime as ort

    net = Deployable.from_checkpoint(ckpt)
    buf = io.BytesIO()
    with _LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter: see the module docstring
        torch.onnx.export(net, (M.example_input(2),), buf, dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["pixels"], output_names=["logits"],
                          dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load_model_from_string(buf.getvalue())
    onnx.helper.set_model_props(proto, metadata(ckpt))
    proto.doc_string = f"Digit Lab {ckpt.description}. Input 'pixels': {INPUT}. Output 'logits': {OUTPUT}."
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a check on a shared server, not a benchmark
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    _check(net, lambda x: session.run(["logits"], {"pixels": x})[0], "ONNX", 1e-4)
    return data


def identify(data: bytes) -> str | None:
    """"torchscript" or "onnx" for an export uploaded where a checkpoint belongs, else None."""
    if data.startswith(b"PK\x03\x04"):
        import zipfile

        try:
            names = zipfile.ZipFile(io.BytesIO(data)).namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return None
        return "torchscript" if any("/code/__torch__/" in n or n.endswith("/constants.pkl") for n in names) else None
    try:
        import onnx

        proto = onnx.load_model_from_string(data)
    except Exception:  # protobuf raises its own DecodeError, and more, for bytes that are not a model
        return None
    return "onnx" if proto.ir_version > 0 and len(proto.graph.node) > 0 else None


# ----------------------------------------------------------------------------- snippets

_READ_IMAGE = """\
# The input: float [batch, 1, 28, 28], pixels in [0, 1], white ink on black as in $DATASET
# (for a dark drawing on a light background, use 1 - pixels).
image = Image.open("digit.png").convert("L").resize((28, 28))"""

_CHECKPOINT = Template("""\
# Needs torch, numpy, pillow and Digit Lab's `core` package (run it in the repository's folder).
import numpy as np
import torch
from PIL import Image

from core.checkpoint import load

CLASSES = $CLASSES
MEAN, STD = $MEAN, $STD  # of the training pixels: the model expects (pixels - MEAN) / STD

ckpt = load("$FILE")  # refuses anything but weights and plain data
model = ckpt.build()  # $MODEL, in eval mode

$READ_IMAGE
pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).reshape(1, 1, 28, 28)
with torch.no_grad():
    logits = model((pixels - MEAN) / STD)  # [batch, 10]
probs = logits.softmax(dim=1)[0]
i = int(probs.argmax())
print(f"prediction: {CLASSES[i]} ({probs[i]:.1%})")

# Without Digit Lab's code the file is a plain dict, safe to read with weights_only=True:
blob = torch.load("$FILE", weights_only=True)
print(sorted(blob))  # 'dataset', 'metrics', 'model_config', 'name', 'state_dict', ...
print(blob["model_config"])  # the architecture: build it, then load_state_dict(blob["state_dict"])
print({name: tuple(t.shape) for name, t in blob["state_dict"].items()})
""")

_TORCHSCRIPT = Template("""\
# Needs only torch, numpy and pillow: the file holds the network and its input normalisation.
import numpy as np
import torch
from PIL import Image

CLASSES = $CLASSES
model = torch.jit.load("$FILE")

$READ_IMAGE
pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).reshape(1, 1, 28, 28)
with torch.no_grad():
    logits = model(pixels)  # [batch, 10]
probs = logits.softmax(dim=1)[0]
i = int(probs.argmax())
print(f"prediction: {CLASSES[i]} ({probs[i]:.1%})")
""")

_ONNX = Template("""\
# Needs only onnxruntime, numpy and pillow (pip install onnxruntime pillow): no torch.
import numpy as np
import onnxruntime as ort
from PIL import Image

session = ort.InferenceSession("$FILE", providers=["CPUExecutionProvider"])
CLASSES = $CLASSES
# the names are in the file too: json.loads(session.get_modelmeta().custom_metadata_map["classes"])

$READ_IMAGE
pixels = (np.asarray(image, dtype=np.float32) / 255).reshape(1, 1, 28, 28)  # input "pixels"
logits = session.run(["logits"], {"pixels": pixels})[0][0]  # output "logits" [batch, 10]
probs = np.exp(logits - logits.max())
probs /= probs.sum()
i = int(probs.argmax())
print(f"prediction: {CLASSES[i]} ({probs[i]:.1%})")
""")


def snippets(ckpt) -> dict[str, str]:
    """Python that loads each download outside the app and classifies ``digit.png``, with the real numbers."""
    info = dataset_info(ckpt.dataset)
    names = file_names(ckpt)
    read = Template(_READ_IMAGE).substitute(DATASET=info.torchvision_class)
    common = {"CLASSES": repr(list(info.classes)), "MEAN": repr(info.mean), "STD": repr(info.std),
              "MODEL": ckpt.description, "READ_IMAGE": read}
    return {kind: template.substitute(common, FILE=names[kind])
            for kind, template in (("checkpoint", _CHECKPOINT), ("torchscript", _TORCHSCRIPT), ("onnx", _ONNX))}

