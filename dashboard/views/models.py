"""Models in and out: download the current model (checkpoint, TorchScript, ONNX), or upload a checkpoint."""

from __future__ import annotations

from functools import partial
from typing import Callable

import streamlit as st

from core import checkpoint, export
from core import models as M
from core.data import dataset_info
from core.values import is_number
from dashboard import state, widgets, words

UPLOAD_KEY = "models.upload"

sess = state.session()


def receive_upload() -> None:
    """Read a newly chosen file once, before the script reruns, so the sidebar names the new model at once."""
    upload = st.session_state.get(UPLOAD_KEY)
    if upload is None:
        return
    data = upload.getvalue()
    source = f"“{upload.name}”"
    try:
        ckpt = checkpoint.load_bytes(data, source=source)
    except checkpoint.CheckpointError as err:
        hint = {"torchscript": "a TorchScript export", "onnx": "an ONNX export"}.get(export.identify(data))
        text = (f"{source} is {hint}: it runs outside Digit Lab but cannot be loaded back. Upload the "
                "checkpoint (.pt) instead." if hint else str(err))
        sess.models_uploaded = (upload.file_id, False, widgets.md_escape(f"{text} The current model stays."))
        return
    sess.use_checkpoint(ckpt, "uploaded")
    name = widgets.md_escape(ckpt.title)
    when = ("answers on the Draw page once the run in progress ends (until then Draw uses the live weights); "
            "it stays the current model after the run" if widgets.run_active() else "now answers on the Draw page")
    sess.models_uploaded = (upload.file_id, True, f"“{name}” {when}.")


def deferred(ckpt: checkpoint.Checkpoint, kind: str, build: Callable) -> Callable[[], bytes]:
    """The file's bytes, made on the first click and kept while ``ckpt`` is the current model."""
    made = sess.memo.get("models.exports", (ckpt,), dict)  # {kind: bytes} built for this checkpoint so far
    return widgets.made_once(made, kind, partial(build, ckpt))


ckpt = sess.current
info = dataset_info(ckpt.dataset)

st.title("Models in and out")
st.subheader("The current model")
acc = ckpt.metrics.get("test_acc")
with st.container(horizontal=True, key="models-tiles"):  # full numbers: a row wraps, never cuts one
    st.metric("Test accuracy", f"{acc:.2%}" if is_number(acc) else "unknown", width="content",
              help=words.term("test accuracy"))
    st.metric("Parameters", f"{M.count_parameters(ckpt.model_config):,}", width="content",  # as Train counts them
              help=words.term("parameters"))
    st.metric("Data set", info.torchvision_class, width="content")
st.markdown(f"**{widgets.md_escape(ckpt.title)}** ({sess.current_source}) · "
            f"{ckpt.description} · {info.title}")
widgets.back_to_bundled("models.bundled")
if widgets.run_active():
    st.info("A run is training: the downloads are the current model (the last one finished or loaded), not the "
            "weights being trained now. When the run ends, its model becomes the current one.",
            icon=":material/model_training:")

st.subheader("Take it out")
st.caption("The exports take pixels in [0, 1], shape [batch, 1, 28, 28], white ink on black as in MNIST, and "
           "return ten logits per image: the normalisation is built in. Each file is checked against the model "
           "before you get it. The snippets classify a 28×28 image, `digit.png`. **Logits**: " + words.term("logits"))
names, code = export.file_names(ckpt), export.snippets(ckpt)
entries = [
    ("checkpoint", "Download the checkpoint", checkpoint.to_bytes,
     "The full Digit Lab checkpoint: weights, architecture, training settings and metrics. Upload it here again, "
     "or load it in Python with this repository's `core` package, or with plain torch."),
    ("torchscript", "Download TorchScript", export.torchscript_bytes,
     "The network as TorchScript: plain torch runs it, without Digit Lab's code."),
    ("onnx", "Download ONNX", export.onnx_bytes,
     "The network as ONNX (opset 17): onnxruntime runs it without torch, and so do many other tools. The class "
     "names, data set and input format are in the file's metadata."),
]
for tab, (kind, label, build, about) in zip(st.tabs(["Checkpoint", "TorchScript", "ONNX"]), entries):
    with tab:
        st.markdown(about)
        st.download_button(label, deferred(ckpt, kind, build), file_name=names[kind], mime="application/octet-stream",
                           key=f"models.download_{kind}", on_click="ignore", icon=":material/download:")
        st.code(code[kind], language="python")

st.subheader("Bring a model in")
st.caption("A Digit Lab checkpoint (.pt) from this page or from a run's folder. Only weights and plain data are "
           "read from it: a file that holds anything else is refused, so it cannot run code here.")
upload = st.file_uploader("Upload a checkpoint", type=["pt", "pth"], key=UPLOAD_KEY, on_change=receive_upload)
last = sess.models_uploaded
if upload is not None and last is not None and last[0] == upload.file_id:
    (st.success if last[1] else st.error)(last[2])
