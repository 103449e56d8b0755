"""Tuned training recipes, shared by the CLI, the benchmark and the dashboard.

The models are the seed's; only how they are trained changes. Each recipe says what it is for. The
bundled model is made by ``python -m core canvasmodel`` (MNIST, pen-written digits and non-digits).
"""

from __future__ import annotations

from core.models import CNNConfig, MLPConfig
from core.trainer import TrainConfig

TRAIN_PRESETS: dict[str, TrainConfig] = {
    # the seed's CNN to 99.0 % test accuracy as fast as this machine allows
    # (2 epochs of anything tried reached 98.8-98.98 %; SGD with Nesterov momentum won at 3)
    "fast-cnn": TrainConfig(model=CNNConfig(), optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, batch_size=64,
                            epochs=3, schedule="onecycle", target_acc=0.99),
    # the seed's MLP to 97.5 % test accuracy as fast as this machine allows
    "fast-mlp": TrainConfig(model=MLPConfig(), optimizer="adam", lr=3e-3, batch_size=128, epochs=3,
                            schedule="onecycle", target_acc=0.975),
    # the seed's CNN on a CUDA GPU: large batches keep the card busy; data stays on the device
    "gpu-cnn": TrainConfig(model=CNNConfig(), optimizer="adam", lr=5e-3, batch_size=512, epochs=6,
                           schedule="onecycle", target_acc=0.99, device="cuda"),
    # the seed's CNN trained with augmentation: the tutorial's model for drawing (the bundled model is
    # core.canvasmodel's, which also learns from pen-written digits and non-digits)
    "default-cnn": TrainConfig(model=CNNConfig(), optimizer="adam", lr=3e-3, batch_size=128, epochs=10,
                               schedule="onecycle", augment=True),
}
