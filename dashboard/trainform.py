"""The Train page's settings as widget values: what a lesson sets, and what a shared link carries.

Each setting is one widget whose key starts with ``train.``; the widgets are bound to the URL's
query parameters, so the address bar always holds the settings that differ from the defaults.
"""

from __future__ import annotations

from urllib.parse import urlencode

from core import lessons as L
from core.models import CNNConfig, MLPConfig, describe
from core.trainer import OPTIMIZER_NAMES, SCHEDULE_NAMES, TrainConfig
from dashboard import state

P = state.TRAIN_PREFIX
# Widgets show (and the URL carries) these short labels; the config takes the values.
DATASET_LABELS = {"MNIST": "mnist", "Fashion-MNIST": "fashion-mnist"}
MODEL_LABELS = {"CNN": "cnn", "MLP": "mlp"}
OPTIMIZER_LABELS = {name: value for value, name in OPTIMIZER_NAMES.items()}
SCHEDULE_LABELS = {name: value for value, name in SCHEDULE_NAMES.items()}
LESSON_KEY = P + "lesson"
NO_LESSON = "—"


def _label(labels: dict, value: str) -> str:
    return next(k for k, v in labels.items() if v == value)


def widget_values(cfg: TrainConfig) -> dict:
    """Session-state values that make the Train page build exactly ``cfg`` (every setting, not only some)."""
    m = cfg.model
    values = {
        P + "dataset": _label(DATASET_LABELS, cfg.dataset),
        P + "model": _label(MODEL_LABELS, m.kind),
        P + "dropout": float(m.dropout), P + "bn": bool(m.batch_norm),
        P + "optimizer": _label(OPTIMIZER_LABELS, cfg.optimizer), P + "lr": cfg.lr,
        P + "momentum": float(cfg.momentum), P + "nesterov": bool(cfg.nesterov),
        P + "weight_decay": cfg.weight_decay, P + "batch_size": cfg.batch_size, P + "epochs": cfg.epochs,
        P + "schedule": _label(SCHEDULE_LABELS, cfg.schedule), P + "augment": bool(cfg.augment),
        P + "seed": int(cfg.seed or 0), P + "device": cfg.device, P + "subset": int(cfg.train_subset or 0),
        P + "target": round((cfg.target_acc or 0) * 100, 1),
    }
    if isinstance(m, MLPConfig):
        values[P + "custom"] = m != MLPConfig()
        values[P + "layers"] = len(m.hidden)
        for i, w in enumerate(m.hidden):
            values[P + f"width{i}"] = w
    else:
        values[P + "custom"] = m != CNNConfig()
        values[P + "c1"], values[P + "c2"] = m.channels
        values[P + "fc"] = m.fc[0] if values[P + "custom"] else L.CUSTOM_CNN_FC
    return values


def summary(cfg: TrainConfig) -> str:
    """One line that says the whole run: what a teacher checks before pressing Start."""
    opt = _label(OPTIMIZER_LABELS, cfg.optimizer)
    if cfg.optimizer in ("sgd", "rmsprop") and cfg.momentum:
        opt += f" momentum {cfg.momentum:g}" + (" Nesterov" if cfg.nesterov else "")
    parts = [_label(DATASET_LABELS, cfg.dataset), describe(cfg.model), f"{opt} lr {cfg.lr:g}",
             f"batch {cfg.batch_size}", f"{cfg.epochs} epoch{'s' if cfg.epochs > 1 else ''}"]
    if cfg.schedule != "constant":
        parts.append(_label(SCHEDULE_LABELS, cfg.schedule))
    if cfg.weight_decay:
        parts.append(f"weight decay {cfg.weight_decay:g}")
    if cfg.train_subset:
        parts.append(f"first {cfg.train_subset:,} images")
    if cfg.augment:
        parts.append("augmented")
    if cfg.target_acc:
        parts.append(f"stop at {cfg.target_acc:.1%}")
    if cfg.seed:
        parts.append(f"seed {cfg.seed}")
    return " · ".join(parts)


# The page's own defaults, for the settings a link can leave out
_DEFAULTS = {**widget_values(TrainConfig()), P + "layers": 2, P + "width0": 128, P + "width1": 64, P + "width2": 32}


def link_params(cfg: TrainConfig, lesson_title: str | None = None) -> dict[str, str]:
    """Query parameters that make a fresh Train page show ``cfg``, written as Streamlit reads them.

    Built from the settings themselves rather than from the address bar: Streamlit writes a value
    set from code into the URL only for widgets that already existed, which layer sliders a
    lesson has just revealed did not.
    """
    values = widget_values(cfg)
    relevant = {P + "dataset", P + "model", P + "custom", P + "optimizer", P + "lr", P + "weight_decay",
                P + "batch_size", P + "epochs", P + "schedule", P + "augment", P + "seed", P + "device",
                P + "subset", P + "target"}
    if values[P + "custom"]:
        relevant |= {P + "dropout", P + "bn"}
        if cfg.model.kind == "mlp":
            relevant |= {P + "layers"} | {P + f"width{i}" for i in range(len(cfg.model.hidden))}
        else:
            relevant |= {P + "c1", P + "c2", P + "fc"}
    if cfg.optimizer in ("sgd", "rmsprop"):
        relevant.add(P + "momentum")
    if cfg.optimizer == "sgd":
        relevant.add(P + "nesterov")
    defaults = {**_DEFAULTS, P + "momentum": 0.0 if cfg.optimizer == "rmsprop" else 0.9}
    params = {}
    for key in sorted(relevant, key=list(values).index):
        value = values[key]
        if value == defaults.get(key):
            continue
        if isinstance(value, bool):
            params[key] = "true" if value else "false"
        elif key in (P + "lr", P + "weight_decay"):  # the sliders show (and read) these as 0.001, 1e-05
            params[key] = f"{value:g}"
        else:
            params[key] = str(value)
    if lesson_title:
        params[LESSON_KEY] = lesson_title
    return params


def share_link(base_url: str | None, cfg: TrainConfig, lesson_title: str | None = None) -> str:
    """The Train page's address with its settings: ``http://host:8501/train?train.lr=0.1&...``."""
    base = (base_url or "http://localhost:8501").rstrip("/")
    if not base.endswith("/train"):  # the browser's address may or may not name the page already
        base += "/train"
    query = urlencode(link_params(cfg, lesson_title))
    return base + (f"?{query}" if query else "")
