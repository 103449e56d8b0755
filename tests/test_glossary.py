"""Words a 15-year-old understands: each term has one sentence, on the Glossary page and where it is used."""

from __future__ import annotations

from dashboard import words
from tests.apptest import app

TERMS = ["loss", "cross-entropy", "epoch", "step", "batch size", "momentum", "weight decay", "samples/s", "ReLU",
         "max pooling", "SmoothGrad", "grad_fn", "logits", "learning rate", "test accuracy", "train accuracy"]


def test_the_glossary_page_explains_every_term_and_names_the_tutorial():
    at = app("views/glossary.py")
    assert not at.exception
    text = "\n".join(m.value for m in at.markdown)
    for term in TERMS:
        assert f"**{term}** — {words.term(term)}" in text
        assert len(words.term(term)) < 240  # a sentence or two, not a lecture
    assert "PyTorch 入门" in text and "Chinese" in text


def test_the_train_page_explains_its_settings_and_its_charts_where_they_are():
    at = app("views/train.py")
    at.radio(key="train.model").set_value("MLP")
    at.selectbox(key="train.optimizer").set_value("SGD")
    at.run()
    helps = {w.key: w.help for w in list(at.slider) + list(at.select_slider)}
    assert words.term("momentum") in helps["train.momentum"]
    assert words.term("weight decay") in helps["train.weight_decay"]
    assert words.term("batch size") in helps["train.batch_size"] and words.term("step") in helps["train.batch_size"]
    assert words.term("epoch") in helps["train.epochs"]
    assert words.term("learning rate") in helps["train.lr"]
    assert any("What is a loss?" in c.value for c in at.caption)  # beside the (empty) live chart


def test_the_tensors_page_names_the_tutorial_and_explains_grad_fn():
    at = app("views/tensors.py")
    captions = " ".join(c.value for c in at.caption)
    assert "PyTorch 入门" in captions and words.term("grad_fn") in captions
