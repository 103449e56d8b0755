"""The words of deep learning in a sentence each, for a 15-year-old: the Glossary page lists them,
and the pages show the same sentence where the word appears (tooltips and captions)."""

from __future__ import annotations

TUTORIAL = ("“PyTorch 入门” (Getting started with PyTorch), a short introduction to PyTorch written in Chinese "
            "that this lab follows: tensors and autograd (its §4.1), then an MLP and a CNN trained on MNIST")
TUTORIAL_SHORT = "the PyTorch 入门 tutorial"

TERMS: dict[str, str] = {
    "loss": "One number that says how wrong the network's answers are on a batch: 0 is perfect, bigger is worse. "
            "Training means nudging the weights so that this number goes down.",
    "cross-entropy": "The loss used here: minus the log of the probability the network gave the right digit. "
                     "100 % sure and right gives 0; guessing among ten digits gives about 2.3.",
    "epoch": "One pass over all the training images (60,000 for MNIST). Three epochs: each image seen three times.",
    "step": "One update of the weights, after one batch. Steps per epoch = training images ÷ batch size.",
    "batch size": "How many images the network looks at before each update of its weights. "
                  "Bigger batches: fewer, steadier steps.",
    "learning rate": "How big each step is. Too small: it learns very slowly. Too big: it overshoots and the loss blows up.",
    "optimizer": "The rule that turns the gradients into weight changes: SGD, Adam, AdamW or RMSprop.",
    "SGD": "Stochastic gradient descent: move every weight a little against its gradient, batch after batch.",
    "momentum": "SGD keeps a running direction, like a ball rolling downhill: it speeds along long slopes "
                "and shakes less. 0 means plain SGD; 0.9 keeps 90 % of the last direction.",
    "Adam": "An optimizer that also gives each weight its own step size, based on how big its gradients have been.",
    "weight decay": "A small pull of every weight towards zero at each step, so that no weight grows huge; "
                    "it can help the network generalise.",
    "samples/s": "Training speed: training images processed per second, over the whole run so far "
                 "(pauses and test-set checks not counted).",
    "test accuracy": "The share of the 10,000 test images — never used for training — that the network gets right.",
    "train accuracy": "The share of training images it got right during the epoch, while it was still learning.",
    "overfitting": "Learning the training images by heart instead of learning digits: train accuracy high, "
                   "test accuracy much lower.",
    "augmentation": "Showing each training image randomly rotated, shifted, scaled or thickened, so the network "
                    "cannot memorise exact pixels.",
    "diverged": "The loss blew up to infinity or NaN (not a number): the learning rate was far too high.",
    "MLP": "Multi-layer perceptron: layers where every number is connected to every number of the next layer. "
           "It flattens the image into 784 numbers.",
    "CNN": "Convolutional neural network: small filters slide over the image looking for strokes and corners, "
           "so it keeps which pixels are neighbours.",
    "ReLU": "An activation that keeps positive numbers and turns negative ones into 0. "
            "Without it, stacked layers could only draw straight lines.",
    "max pooling": "Shrinks a feature map by keeping only the largest value of each 2×2 square: half the width, "
                   "half the height.",
    "logits": "The ten raw scores the network outputs, one per digit, before softmax turns them into "
              "probabilities that add up to 100 %.",
    "saliency": "A heat map of which pixels changed the answer most.",
    "SmoothGrad": "Saliency averaged over 32 noisy copies of the drawing, which removes speckle.",
    "grad_fn": "The note a tensor keeps of the operation that made it, so that backward() can walk back "
               "through the operations and compute gradients.",
    "gradient": "For each weight: which way, and how strongly, it should change to make the loss smaller.",
    "parameters": "The weights and biases the network learns; more parameters, more it can memorise.",
}


def term(name: str) -> str:
    """The one-line explanation of a word (a KeyError for a word the glossary lacks: add it there)."""
    return TERMS[name]


WHAT_IS_A_LOSS = ("**What is a loss?** " + TERMS["loss"] + " Here it is the cross-entropy: minus the log of the "
                  "probability the network gave the right digit (about 2.3 for a blind guess among ten). "
                  "The thin line is every batch; the thick line smooths it.")
TRAIN_VS_TEST = ("**Why do train and test accuracy differ?** Train accuracy is averaged over the whole epoch, "
                 "while the network was still learning, so its early mistakes count (after epoch 1 it can be far "
                 "below test: 61 % against 89 %). Test accuracy is measured once, at the end of the epoch, with "
                 "the finished weights, on images it never trained on. Later, train far above test means "
                 "overfitting: it memorised the training images.")
