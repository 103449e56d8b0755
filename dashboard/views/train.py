"""Train: pick a model and its hyperparameters, start, and watch the loss fall live."""

from __future__ import annotations

from dataclasses import replace

import time

import streamlit as st
import torch

from core import identity
from core import lessons as L
from core import models as M
from core.data import Augment, DataUnavailableError, dataset_info, random_affine
from core.live import live_runs
from core.trainer import TrainConfig, available_devices
from dashboard import charts, state, trainform, widgets, words

P = state.TRAIN_PREFIX
LIVE_REFRESH_S = 1.0  # the charts redraw once a second: smooth enough, and half the browser work of 2 Hz
DATASET_LABELS, MODEL_LABELS = trainform.DATASET_LABELS, trainform.MODEL_LABELS
OPTIMIZER_LABELS, SCHEDULE_LABELS = trainform.OPTIMIZER_LABELS, trainform.SCHEDULE_LABELS

sess = state.session()
running = widgets.run_active()


def keep(**kw):
    """Widget options that keep a setting across pages and mirror it in the URL (a shareable link)."""
    return dict(persist_state="session", bind="query-params", disabled=running, **kw)


def settings_ui() -> TrainConfig:
    """The settings column: only gathers values and returns a config."""
    dataset, model = model_ui()
    return TrainConfig(dataset=dataset, model=model, **optimisation_ui(), **more_ui())


def model_ui() -> tuple[str, M.ModelConfig]:
    """The data set and the network."""
    st.markdown("#### Data and model")
    dataset = DATASET_LABELS[st.radio("Data set", list(DATASET_LABELS), horizontal=True, key=P + "dataset",
                                      **keep(help="MNIST: handwritten digits. Fashion-MNIST: photos of clothing."))]
    kind = MODEL_LABELS[st.radio("Network", list(MODEL_LABELS), horizontal=True, key=P + "model", **keep(
        help="CNN: the LeNet-style convolutional net of the PyTorch 入门 tutorial. " + words.term("CNN")
                + " MLP: the tutorial's fully connected 784-128-64-10. " + words.term("MLP")))]
    custom = st.toggle("Customise the layers", key=P + "custom", **keep(
        help="Off: exactly the PyTorch 入门 tutorial's network. On: change widths, channels, dropout and batch norm."))
    if kind == "mlp":
        cfg: M.ModelConfig = M.MLPConfig()
        if custom:
            layers = st.slider("Hidden layers", 1, L.MAX_HIDDEN_LAYERS, 2, key=P + "layers", **keep())
            defaults = [128, 64, 32]
            hidden = tuple(st.select_slider(f"Width of hidden layer {i + 1}", L.WIDTHS, defaults[i],
                                            key=P + f"width{i}", **keep()) for i in range(layers))
            cfg = M.MLPConfig(hidden=hidden)
    else:
        cfg = M.CNNConfig()
        if custom:
            c1 = st.select_slider("Conv 1 channels", L.CHANNELS, 6, key=P + "c1", **keep())
            c2 = st.select_slider("Conv 2 channels", L.CHANNELS, 16, key=P + "c2", **keep())
            fc = st.select_slider("Fully connected width", L.WIDTHS, L.CUSTOM_CNN_FC, key=P + "fc", **keep())
            cfg = M.CNNConfig(channels=(c1, c2), fc=(fc, L.CNN_SECOND_FC) if fc >= L.CNN_SECOND_FC else (fc,))
    if custom:
        dropout = st.slider("Dropout", 0.0, L.MAX_DROPOUT, 0.0, 0.05, key=P + "dropout", **keep())
        bn = st.checkbox("Batch norm", key=P + "bn", **keep())
        cfg = replace(cfg, dropout=dropout, batch_norm=bn)
    st.caption(f"**{M.describe(cfg)}** · {M.count_parameters(cfg):,} parameters (the weights it learns)")
    return dataset, cfg


def optimisation_ui() -> dict:
    """How the weights are updated, how often and for how long: TrainConfig's fields by name."""
    st.markdown("#### Optimisation")
    opt = OPTIMIZER_LABELS[st.selectbox("Optimizer", list(OPTIMIZER_LABELS), index=1, key=P + "optimizer",
                                        **keep(help=words.term("optimizer") + " " + words.term("SGD") + " "
                                               + words.term("Adam")))]
    lr = st.select_slider("Learning rate (log scale)", L.LEARNING_RATES, 1e-3, format_func=lambda v: f"{v:g}",
                          key=P + "lr", **keep(help=words.term("learning rate")))
    momentum, nesterov = 0.9, False
    if opt in ("sgd", "rmsprop"):
        momentum = st.slider("Momentum", 0.0, 0.99, 0.9 if opt == "sgd" else 0.0, 0.01, key=P + "momentum",
                             **keep(help=words.term("momentum")))
    if opt == "sgd":
        nesterov = st.checkbox("Nesterov momentum", key=P + "nesterov", **keep())
    wd = st.select_slider("Weight decay", L.WEIGHT_DECAYS, 0.0, format_func=lambda v: f"{v:g}",
                          key=P + "weight_decay", **keep(help=words.term("weight decay")))
    batch = st.select_slider("Batch size", L.BATCH_SIZES, 64, key=P + "batch_size",
                             **keep(help=words.term("batch size") + " " + words.term("step")))
    epochs = st.slider("Epochs", 1, L.MAX_EPOCHS, 3, key=P + "epochs", **keep(help=words.term("epoch")))
    schedule = SCHEDULE_LABELS[st.selectbox("Learning-rate schedule", list(SCHEDULE_LABELS), key=P + "schedule",
                                            **keep(help="one-cycle: warm up, then anneal. cosine: decay along a "
                                                        "half cosine. Both end near zero."))]
    augment = st.toggle("Augmentation (random rotate, shift, scale, shear, thicker strokes)", key=P + "augment",
                        **keep(help=words.term("augmentation")))
    return dict(optimizer=opt, lr=float(lr), momentum=float(momentum), nesterov=bool(nesterov),
                weight_decay=float(wd), batch_size=int(batch), epochs=int(epochs), schedule=schedule,
                augment=bool(augment))


def more_ui() -> dict:
    """The seed, the device, a subset and a target, folded away: TrainConfig's fields by name."""
    with st.expander("More: seed, device, subset, target"):
        seed = st.number_input("Seed (same seed, same run)", 0, 2**31 - 1, 0, key=P + "seed", **keep())
        devices = ["auto"] + available_devices()
        device = st.selectbox("Device", devices, key=P + "device", **keep(
            help="auto picks CUDA, then Apple MPS, then the CPU. Found here: " + ", ".join(available_devices())))
        subset = st.number_input("Train on the first N samples only (0 = all 60,000)", 0, 60_000, 0, 100,
                                 key=P + "subset", **keep())
        target = st.number_input("Stop at test accuracy (%; 0 = never)", 0.0, 100.0, 0.0, 0.5, key=P + "target",
                                 **keep())
    return dict(seed=int(seed), device=device, train_subset=int(subset) or None,
                target_acc=(float(target) / 100) or None)


@st.cache_data(show_spinner=False)
def lessons(path: str, mtime: float) -> list[L.Lesson]:
    """Read again whenever the teacher edits the file."""
    return L.load_lessons(path)


def apply_lesson(lesson: L.Lesson, index: int) -> None:
    """Button callback: every setting of the run, before the widgets are drawn."""
    run = lesson.runs[index]
    st.session_state.update(trainform.widget_values(run.config))
    sess.lesson_run = (lesson.title, run.label, run.config)


def lesson_ui() -> str | None:
    """The lesson picker and its run buttons; the title of the lesson picked, if any."""
    path = L.lessons_file()
    try:
        found = {lesson.id: lesson for lesson in lessons(str(path), path.stat().st_mtime)}
    except (L.LessonError, OSError) as err:
        st.error(f"The lessons could not be read: {err}")
        return None
    lid = st.selectbox("Lesson", [trainform.NO_LESSON, *found], key=trainform.LESSON_KEY, **keep(
        format_func=lambda i: found[i].title if i in found else "none: my own settings",
        help=f"Ready-made runs, each one click. Teachers add their own in {path.name}."))
    lesson = found.get(lid)
    if lesson is None:
        return None
    with st.container(border=True):
        st.markdown(lesson.watch)
        with st.container(horizontal=True, key="lesson-runs"):  # full labels; a row wraps, never cuts one
            for i, run in enumerate(lesson.runs):
                st.button(run.label, key=f"lesson.run{i}", on_click=apply_lesson, args=(lesson, i), disabled=running,
                          help=f"Sets every setting for this run ({trainform.summary(run.config)}); "
                               "then press Start.")
    return lesson.title


def run_name(cfg: TrainConfig) -> str:
    loaded = sess.lesson_run
    if loaded and loaded[2] == cfg:
        return f"{loaded[1]} ({loaded[0]})"
    return f"Run {sess.runs_started}: {M.describe(cfg.model)}"


def share_ui(cfg: TrainConfig, lesson_title: str | None) -> None:
    with st.popover("Share these settings", icon=":material/link:"):
        st.markdown("Anyone who opens this link gets exactly these settings:")
        st.code(trainform.share_link(st.context.url, cfg, lesson_title), language=None, wrap_lines=True)
        st.caption("The copy button is at the right of the link. On a classroom network, open Digit Lab by this "
                   "computer's address (not localhost) before sharing, so that the link works for others.")


def controls(cfg: TrainConfig, lesson_title: str | None) -> None:
    problem = None
    try:
        cfg.validate(cfg.train_subset or 60_000)
    except ValueError as err:
        problem = str(err)
    run = sess.run
    mine = run is None or state.may_manage(run.owner)  # pages attach only their person's run; this is a second lock
    not_mine = None if mine else widgets.md_escape(identity.why_not(run.owner))  # a name is user text
    if running and run is not None:  # what trains now, not the settings the next run would take
        st.markdown(f"**Training:** {widgets.md_escape(trainform.summary(run.config))}")
    else:
        st.markdown(f"**Ready:** {widgets.md_escape(trainform.summary(cfg))}")
    if not state.who().name and not running:  # before Start only: while training the chart needs the room
        st.caption(":material/badge: You have not typed your name (top of the side panel): a run you start now is "
                   "a guest's, yours only in this tab, and not on the Results page.")
    with st.container(horizontal=True, key="train-buttons"):
        if st.button("Start", icon=":material/play_arrow:", type="primary", disabled=running or problem is not None,
                     key="train.start_button", help="Train with the settings on this page."):
            sess.runs_started += 1
            sess.run = live_runs().start(owner=state.owner(), config=cfg, name=run_name(cfg))
            st.rerun()
        paused = run is not None and run.status().state == "paused"
        if st.button("Resume" if paused else "Pause", icon=":material/play_arrow:" if paused else ":material/pause:",
                     disabled=not running or not mine, key="train.pause_button",
                     help=not_mine or "Hold the run between two steps; the time paused is not counted."):
            identity.require(state.who(), run.owner)
            (run.resume if paused else run.pause)()
            st.rerun()
        if st.button("Stop", icon=":material/stop_circle:", disabled=not running or not mine, key="train.stop_button",
                     help=not_mine or "End the run now. Its model is kept on the Runs page."):
            identity.require(state.who(), run.owner)
            run.stop()
            st.rerun()
        share_ui(cfg, lesson_title)
    if problem:
        st.error(problem)


def end_summary(view) -> None:
    end = view.end
    if end.reason == "diverged":
        st.error(f"**The run diverged.** {end.message}")
    elif end.reason == "failed":
        st.error(f"**The run failed.** {end.message}")
    else:
        st_fn = st.warning if end.reason == "stopped" else st.success
        st_fn(f"**Run {end.reason}.** " + numbers_text(end, view.start.steps_per_epoch if view.start else None))
    run = sess.run
    if sess.current_source == "trained" and run is not None and sess.current is run.result:
        st.caption("This model now answers on the Draw page.")
    elif run is not None and sess.chosen_during == run.ticket and run.result is not None:
        st.caption("The model picked during the run still answers on the Draw page; this run's model is kept "
                   "on the Runs page.")
    elif end.reason in state.UNHEALTHY:
        answering = widgets.md_escape(sess.current.title)
        st.caption(f"So its model does **not** answer on the Draw page: **{answering}** still does. "
                   "To try it anyway, pick it on the Runs page.")


def numbers_text(end, steps_per_epoch: int | None) -> str:
    """The end of a run in the same numbers as the tiles above and the Runs table."""
    if end.test_acc is None:
        acc = "not measured (stopped before an epoch ended)"
    elif steps_per_epoch and end.steps > end.epochs * steps_per_epoch:  # stopped mid-epoch
        acc = f"{end.test_acc:.2%}, of the weights kept at step {end.steps:,}"
    else:
        acc = f"{end.test_acc:.2%}"
    return (f"Test accuracy {acc}; {end.epochs} epoch{'s' if end.epochs != 1 else ''}, {end.steps:,} steps in "
            f"{widgets.format_seconds(end.train_seconds)} ({end.samples_per_s:,.0f} samples/s).")


def tiles(view, last, losses: list[float]) -> None:
    """The run's key numbers. Each has one definition (core.trainer) shared with the summary and the Runs table:
    samples/s and time leave out pauses, and the accuracy at the end is that of the weights kept."""
    end = view.end
    if end is not None:  # the run's own final figures, as the summary below says them
        rate, acc, secs = end.samples_per_s, end.test_acc, end.train_seconds
    else:
        rate = last.samples_per_s if last else None
        acc = view.epochs[-1].test_acc if view.epochs else None
        secs = (time.perf_counter() - view.started_at - view.paused_for) if view.started_at else None
    with st.container(horizontal=True, key="train-tiles"):
        st.metric("Test accuracy", f"{acc:.2%}" if acc is not None else "–", width="content",
                  help=words.term("test accuracy") + " Measured at the end of each epoch: the first comes after epoch 1.")
        loss = charts.smooth(losses)[-1] if losses else None
        shown = "–" if loss is None else f"{loss:.3f}" if loss < 1000 else f"{loss:.1e} (blew up)"
        st.metric("Loss", shown, width="content",
                  help=words.term("loss") + " Shown smoothed, as the thick line.")
        st.metric("Samples/s", f"{rate:,.0f}" if rate else "–", width="content", help=words.term("samples/s"))
        st.metric("Time", widgets.format_seconds(secs) if secs is not None else "–", width="content",
                  help="Training time so far, test-set checks included, pauses not counted.")


@st.fragment(run_every=LIVE_REFRESH_S if running else None)
def live_panel() -> None:
    run = sess.run
    if run is None:
        st.info("Pick a model and its settings, then press **Start**. The loss appears here as it trains.",
                icon=":material/model_training:")
        st.caption(words.WHAT_IS_A_LOSS)
        return
    trace = sess.loss_trace
    trace.follow(run.ticket)
    if not run.done:
        live_runs().watch(run.id)  # someone is looking: the run is not idle
    view = run.view(since_batch=len(trace.steps))  # only the new batches are copied
    trace.steps += [b.step for b in view.batches]
    trace.losses += [b.loss for b in view.batches]
    if view.batches:
        trace.last = view.batches[-1]
    if run.done and sess.adopt_finished_run():
        st.rerun()  # the end of a run changes buttons and the current model: redraw the whole page
    if view.state == "queued":
        st.warning(f"Other runs are using this server's training slots: {widgets.queue_text(view)}. It starts by itself.",
                   icon=":material/hourglass_top:")
    elif view.start is None and view.end is None:
        st.info("Loading the data and building the model…")
    last = trace.last
    if view.start is not None:
        if not run.done:
            step = last.step if last else 0
            paused = "paused · " if view.state == "paused" else ""
            st.progress(min(step / view.start.total_steps, 1.0),
                        text=paused + widgets.eta_text(last, view.start.total_steps, view.config.epochs,
                                                       view.started_at, view.paused_for))
        tiles(view, last, trace.losses)
        st.plotly_chart(charts.loss_figure(trace.steps, trace.losses, view.start.total_steps),
                        key="train.loss_chart", config={"displayModeBar": False})
        # whose run this is, after a reload too; below the chart, so the controls and the chart share one screen
        st.caption(widgets.md_escape(f"{run.name} · {identity.shown(run.owner)}"))
        st.caption(words.WHAT_IS_A_LOSS + f" Trained on: {view.start.device}.")
        if view.epochs:
            st.plotly_chart(charts.accuracy_figure([e.epoch for e in view.epochs], [e.train_acc for e in view.epochs],
                                                   [e.test_acc for e in view.epochs]), key="train.acc_chart",
                            config={"displayModeBar": False})
            st.caption(words.TRAIN_VS_TEST)
            rows = [{"epoch": str(e.epoch), "train loss": round(e.train_loss, 4), "train acc": f"{e.train_acc:.2%}",
                     "test loss": round(e.test_loss, 4), "test acc": f"{e.test_acc:.2%}",
                     "seconds": round(e.seconds, 1)} for e in view.epochs]
            end = view.end
            if (end is not None and end.test_acc is not None
                    and end.steps > end.epochs * view.start.steps_per_epoch):  # stopped mid-epoch: the weights kept
                rows.append({"epoch": f"kept at step {end.steps:,}", "train loss": None, "train acc": None,
                             "test loss": round(end.test_loss, 4), "test acc": f"{end.test_acc:.2%}",
                             "seconds": None})
            st.dataframe(rows, hide_index=True)
    if view.end is not None:
        end_summary(view)


def data_preview(cfg: TrainConfig) -> None:
    """A batch as the DataLoader hands it to the network; with augmentation, each image distorted afresh."""
    with st.expander("See a batch of the training data", icon=":material/photo_library:"):
        try:
            split = state.train_split(cfg.dataset)
        except DataUnavailableError as err:
            st.error(str(err))
            return
        info = dataset_info(cfg.dataset)
        shown = sess.preview_batch
        g = torch.Generator().manual_seed(shown)
        idx = torch.randint(0, min(cfg.train_subset or len(split), len(split)), (16,), generator=g)
        images, labels = split.images[idx], split.labels[idx].tolist()
        st.caption(f"16 of the {min(cfg.train_subset or len(split), len(split)):,} training images of {info.title}, "
                   f"with their labels: what one batch of the PyTorch 入门 tutorial's DataLoader holds "
                   f"(a batch of {cfg.batch_size} holds {cfg.batch_size} such images).")
        st.image([widgets.pixelated(im.numpy(), 3) for im in images], caption=[info.classes[y] for y in labels], width=66)
        if cfg.augment:
            warped = random_affine(images.unsqueeze(1).float(), Augment(), g).squeeze(1).clamp(0, 255)
            st.caption("The same images as augmentation shows them to the network (different every epoch):")
            st.image([widgets.pixelated(im.to(torch.uint8).numpy(), 3) for im in warped],
                     caption=[info.classes[y] for y in labels], width=66)
        if st.button("Another batch", icon=":material/shuffle:", key="train.preview_next"):
            sess.preview_batch = shown + 1
            st.rerun()


st.title("Train a network")
# Settings left, the run right: Start, Pause and Stop sit right above the progress bar and the live
# chart. On a narrow screen the two boxes stack, the run first (wrap-reverse), so the buttons and
# the chart stay together at the top while a run trains.
with st.container(horizontal=True, gap="large", key="train-layout"):
    with st.container(key="train-settings"):
        lesson_title = lesson_ui()
        config = settings_ui()
        sess.train_config = config
    with st.container(key="train-live"):
        controls(config, lesson_title)
        live_panel()
        data_preview(config)
