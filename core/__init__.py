"""Digit Lab's engine: data, models, trainer, inference and checkpoints. No user interface here."""
