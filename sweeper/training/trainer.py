"""The torch side of a run: training epochs, evaluation and the inference benchmark.

Nothing here knows about energy or storage; the job module wraps each call in a
measured phase.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from sweeper.training import distributed
from sweeper.training.device import autocast_dtype
from sweeper.training.schedule import current_lr

StepHook = Callable[[int], None]  # called with the global step count after each step


class DivergedError(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass
class EpochStats:
    loss: float
    accuracy: float
    steps: int
    samples: int
    duration_s: float
    lr: float = math.nan  # the learning rate this epoch trained with


@dataclass
class EvalStats:
    loss: float
    accuracy: float
    samples: int
    duration_s: float


@dataclass
class InferenceStats:
    batches: int
    samples: int
    duration_s: float
    loss: float | None = None  # the study's protocol only: over labelled test passes
    accuracy: float | None = None


def make_optimizer(
    name: str, params: Iterator[nn.Parameter], lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _sync(device: torch.device) -> None:
    # Phase boundaries must wait for queued GPU work, or its energy lands in the next phase.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """Holds what every phase of one run shares: model, optimiser, device, precision."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        precision: str,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    ) -> None:
        self.model = model.to(device)
        self.optimizer = optimizer
        self.scheduler = scheduler  # stepped once at the end of every training epoch
        self.device = device
        self.precision = precision
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        self.loss_fn = nn.CrossEntropyLoss()
        self.global_step = 0

    def train_epoch(
        self,
        loader: DataLoader,
        on_step: StepHook | None = None,
        progress: Callable[[], None] | None = None,
    ) -> EpochStats:
        self.model.train()
        start = time.perf_counter()
        lr = current_lr(self.optimizer)
        total_loss = correct = samples = steps = 0
        for inputs, targets in loader:
            inputs = inputs.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
            self.optimizer.zero_grad(set_to_none=True)
            with _autocast(self.device, self.precision):
                logits = self.model(inputs)
                loss = self.loss_fn(logits.float(), targets)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise DivergedError(
                    f"training loss became {loss_value} at step {self.global_step + 1}"
                )
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            batch = targets.shape[0]
            total_loss += loss_value * batch
            correct += (logits.argmax(dim=1) == targets).sum().item()
            samples += batch
            steps += 1
            self.global_step += 1
            if on_step is not None:
                on_step(self.global_step)
            if progress is not None:
                progress()
        _sync(self.device)
        duration_s = time.perf_counter() - start
        if self.scheduler is not None:
            self.scheduler.step()
        stats = EpochStats(
            loss=total_loss / max(samples, 1),
            accuracy=correct / max(samples, 1),
            steps=steps,
            samples=samples,
            duration_s=duration_s,
            lr=lr,
        )
        return distributed.reduce_epoch(stats, self.device)  # all ranks' samples under DDP

    @torch.no_grad()
    def evaluate(self, loader: DataLoader) -> EvalStats:
        self.model.eval()
        start = time.perf_counter()
        total_loss = correct = samples = 0
        for inputs, targets in loader:
            inputs = inputs.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
            with _autocast(self.device, self.precision):
                logits = self.model(inputs)
            total_loss += self.loss_fn(logits.float(), targets).item() * targets.shape[0]
            correct += (logits.argmax(dim=1) == targets).sum().item()
            samples += targets.shape[0]
        _sync(self.device)
        return EvalStats(
            loss=total_loss / max(samples, 1),
            accuracy=correct / max(samples, 1),
            samples=samples,
            duration_s=time.perf_counter() - start,
        )

    @torch.no_grad()
    def warm_up(self, loader: DataLoader, batches: int) -> None:
        """Forward passes over the loader's first `batches` batches, waited for: run before
        a measured inference phase, never inside it, so a phase's energy and time cover
        exactly the samples it counts."""
        if batches <= 0:
            return
        self.model.eval()
        for inputs, _ in _take(loader, batches):
            with _autocast(self.device, self.precision):
                self.model(inputs.to(self.device))
        _sync(self.device)

    def cached_inputs(self, loader: DataLoader, batches: int) -> list[torch.Tensor]:
        """The loader's first `batches` input batches on the device (cycled when it is
        shorter), for `inference_benchmark`: read before its phase, which times forward
        passes only."""
        inputs = [x.to(self.device) for x, _ in _take(loader, max(batches, 1))]
        _sync(self.device)
        return inputs

    @torch.no_grad()
    def inference_benchmark(
        self, inputs_cache: list[torch.Tensor], batches: int, min_seconds: float = 0.0,
    ) -> InferenceStats:
        """Forward passes over at least `batches` batches and at least `min_seconds`,
        cycling the cached batches (`cached_inputs`; warm-up: `warm_up`, both before the
        measured phase).

        The time floor makes the phase span enough meter refreshes to be measured; the
        clock is read without synchronising, and only once it has passed the floor does the
        queued GPU work get waited for, so the floor costs no per-batch synchronisation.
        """
        self.model.eval()
        start = time.perf_counter()
        samples = done = 0
        while done < batches or (
            min_seconds > 0 and time.perf_counter() - start < min_seconds
        ):
            inputs = inputs_cache[done % len(inputs_cache)]
            with _autocast(self.device, self.precision):
                self.model(inputs)
            samples += inputs.shape[0]
            done += 1
        _sync(self.device)
        return InferenceStats(
            batches=done, samples=samples, duration_s=time.perf_counter() - start
        )

    @torch.no_grad()
    def inference_passes(
        self, loader: DataLoader, passes: int, min_seconds: float = 0.0,
    ) -> InferenceStats:
        """The study's protocol: the whole test set through its loader `passes` times
        (data loading and host-to-device copies included, as in the study's code), then
        whole passes until `min_seconds` have gone by, so the per-sample figure keeps the
        study's definition while the phase spans enough meter refreshes. Loss and accuracy
        are computed as the study's test pass does (it is its accuracy), summed on the
        device so no batch waits for the host."""
        self.model.eval()
        start = time.perf_counter()
        samples = batches = done = 0
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        while done < passes or (min_seconds > 0 and time.perf_counter() - start < min_seconds):
            before = samples
            for inputs, targets in loader:
                targets = targets.to(self.device, non_blocking=True)
                with _autocast(self.device, self.precision):
                    logits = self.model(inputs.to(self.device, non_blocking=True))
                loss_sum += self.loss_fn(logits.float(), targets) * targets.shape[0]
                correct += (logits.argmax(dim=1) == targets).sum()
                samples += inputs.shape[0]
                batches += 1
            if samples == before:
                raise ValueError("the inference data set is empty")
            done += 1
        _sync(self.device)
        return InferenceStats(
            batches=batches, samples=samples, duration_s=time.perf_counter() - start,
            loss=loss_sum.item() / samples, accuracy=correct.item() / samples,
        )


def _take(loader: DataLoader, n: int) -> list:
    """The first n batches of a loader, cycling it when it is shorter."""
    out: list = []
    while len(out) < n:
        before = len(out)
        for batch in loader:
            out.append(batch)
            if len(out) == n:
                break
        if len(out) == before:
            raise ValueError("the inference data set is empty")
    return out
