"""The backend interface: load, infer(batch) -> outputs, I/O metadata, close, timings."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from edge_ich.card import ModelCard
from edge_ich.errors import ModelError


@dataclass
class InferTimes:
    """Seconds spent in the last `infer` call, split where the backend can tell."""

    h2d: float = 0.0
    compute: float = 0.0
    d2h: float = 0.0

    @property
    def total(self) -> float:
        return self.h2d + self.compute + self.d2h


@dataclass
class IOMeta:
    name: str
    shape: tuple[int | str | None, ...]
    dtype: str


@dataclass
class BackendInfo:
    name: str
    device: str
    precision: str
    details: dict[str, str] = field(default_factory=dict)


class Backend(ABC):
    """Template: `infer` checks the input against the card, runs `_infer`, records times."""

    card: ModelCard
    info: BackendInfo
    last_times: InferTimes

    def __init__(self, card: ModelCard) -> None:
        self.card = card
        self.last_times = InferTimes()

    @property
    @abstractmethod
    def inputs(self) -> list[IOMeta]: ...

    @property
    @abstractmethod
    def outputs(self) -> list[IOMeta]: ...

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """Run the network on a checked float32 batch [N, C, H, W]; return [N, 1, H, W] raw output."""

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Checked inference; returns the model's raw first output as float32 [N, 1, H, W]."""
        c, (h, w) = self.card.in_channels, self.card.input_size
        if batch.ndim != 4 or batch.shape[1:] != (c, h, w):
            raise ModelError(f"input batch shape {tuple(batch.shape)} does not fit the model ([N, {c}, {h}, {w}])")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        t0 = time.perf_counter()
        out = self._infer(batch)
        if not any((self.last_times.h2d, self.last_times.compute, self.last_times.d2h)):
            self.last_times = InferTimes(compute=time.perf_counter() - t0)
        out = np.asarray(out, dtype=np.float32)
        if out.ndim == 3:
            out = out[:, None]
        return out

    def close(self) -> None:  # noqa: B027 (a no-op by default; backends that hold resources override it)
        """Release sessions, contexts and device memory."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
