"""``EarlyStopping``: stop when a monitored metric stops improving (Keras's rule)."""

from __future__ import annotations

from .._checks import non_negative_int
from ._protocol import Callback


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved for ``patience`` epochs in a row.

    Keras's rule: training stops at the ``patience``-th epoch in a row
    without an improvement (``patience=0`` or ``1``: the first one). ``best``
    holds the best value seen and ``stopped_epoch`` the epoch it stopped at
    (or ``None``).

    Args:
      monitor: a key of the epoch logs, e.g. ``"val_loss"`` or ``"val_accuracy"``.
      patience: epochs without improvement to wait, >= 0.
      min_delta: the smallest change that counts as an improvement.
      mode: ``"min"``, ``"max"``, or ``"auto"`` (max for names containing
        ``"acc"``, such as ``"val_accuracy"``, else min).

    >>> stop = EarlyStopping("val_loss", patience=2)
    >>> [stop.on_epoch_end(None, epoch, None, {"val_loss": v})
    ...  for epoch, v in enumerate([0.5, 0.25, 0.375, 0.3125], start=1)]
    [None, None, None, True]
    >>> stop.best, stop.stopped_epoch
    (0.25, 4)
    >>> EarlyStopping("val_accuracy").mode
    'max'
    """

    def __init__(self, monitor: str = "val_loss", *, patience: int = 3, min_delta: float = 0.0,
                 mode: str = "auto"):
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.patience = non_negative_int("patience", patience)
        self.min_delta = abs(float(min_delta))
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.best: float | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, run, epoch, state, logs):
        if self.monitor not in logs:
            raise KeyError(f"EarlyStopping: monitor {self.monitor!r} is not in the epoch logs "
                           f"{sorted(logs)} (pass val_data to fit for val_* metrics)")
        value = float(logs[self.monitor])
        sign = 1.0 if self.mode == "min" else -1.0
        if self.best is None or sign * (self.best - value) > self.min_delta:
            self.best, self.wait = value, 0
            return None
        self.wait += 1
        if self.wait >= max(self.patience, 1):
            self.stopped_epoch = epoch
            return True
        return None
