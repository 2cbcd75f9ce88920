"""GPU energy of a run: the card's own energy counter, read before and after the run.

NVIDIA cards from Volta on (the owner's RTX 3080 Ti included) keep a total-energy counter since
the driver loaded (``nvmlDeviceGetTotalEnergyConsumption``, millijoules), read through NVML's
Python bindings (the ``nvidia-ml-py`` package, module ``pynvml``). The difference between two
reads is what the board drew between them, idle draw included: the true cost of the run.

Where no counter can be read (no NVIDIA GPU, no ``nvidia-ml-py``, a card without the counter)
the worker records ``HOFFDESK_GPU_WATTS`` x GPU seconds instead, marked as an estimate.

No Django and no torch here: the worker, the engine and a benchmark can all use it.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class EnergyReader(Protocol):
    """A total-energy counter in joules that only grows while the driver stays loaded."""

    def total_joules(self) -> float: ...


class NvmlReader:
    """The counter of the NVIDIA GPU this process uses, through NVML (lazily imported)."""

    def __init__(self, nvml: Any, handle: Any) -> None:
        self.nvml = nvml
        self.handle = handle

    def total_joules(self) -> float:
        return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)) / 1000.0

    @classmethod
    def open(cls) -> NvmlReader | None:
        """A reader for this process's GPU, or None when there is no NVML, no NVIDIA GPU or no
        counter on it (checked by one read, so a card without it falls back at once)."""
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None and not visible.strip():
            return None  # CUDA hidden on purpose: this worker runs on the CPU
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            return None
        try:
            nvml.nvmlInit()
            handle = _visible_device(nvml, visible)
            reader = cls(nvml, handle)
            reader.total_joules()
        except Exception as exc:  # pynvml.NVMLError and its many subclasses: no driver, no GPU, no counter
            logger.info("no GPU energy counter (%s): energy is estimated from HOFFDESK_GPU_WATTS", exc)
            return None
        return reader


def _visible_device(nvml: Any, visible: str | None) -> Any:
    """The first GPU CUDA shows this process: by index or UUID from ``CUDA_VISIBLE_DEVICES``,
    else device 0. (NVML numbers GPUs in PCI order; with several cards set
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so that CUDA's numbers agree.)"""
    first = (visible or "0").split(",")[0].strip()
    if first.isdigit():
        return nvml.nvmlDeviceGetHandleByIndex(int(first))
    return nvml.nvmlDeviceGetHandleByUUID(first)


@functools.lru_cache(maxsize=8)
def energy_reader(spec: str) -> EnergyReader | None:
    """The reader ``HOFFDESK_ENERGY_READER`` names: "auto" (NVML where it works, else None),
    "estimate" (None: always the estimate), or the dotted path of a class whose instances have
    ``total_joules()`` (another vendor's counter). Made once per process."""
    if spec == "estimate":
        return None
    if spec == "auto":
        return NvmlReader.open()
    module_name, _, class_name = spec.rpartition(".")
    try:
        reader_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(
            f"HOFFDESK_ENERGY_READER: {spec!r} is not auto, estimate or the dotted path of a reader class"
        ) from None
    return reader_class()  # type: ignore[no-any-return]


def read_joules(reader: EnergyReader | None) -> float | None:
    """The counter now, or None without a reader or when the read fails (never raises: a
    counter must not fail a run whose images are fine)."""
    if reader is None:
        return None
    try:
        return float(reader.total_joules())
    except Exception:
        logger.warning("reading the GPU energy counter failed; this run's energy is estimated", exc_info=True)
        return None


def counter_now(spec: str) -> float | None:
    """The counter of the reader ``spec`` names now; None without one. A reader that cannot be
    made (a wrong dotted path) is logged and the run's energy estimated: a cost setting never
    fails a run."""
    try:
        reader = energy_reader(spec)
    except ValueError:
        logger.error("%s; estimating energy from HOFFDESK_GPU_WATTS instead", spec, exc_info=True)
        return None
    return read_joules(reader)


def energy_between(before: float | None, after: float | None) -> float | None:
    """Joules used between two reads; None when either is missing or the counter went back
    (the driver reloaded between them), so the caller estimates instead."""
    if before is None or after is None or after < before:
        return None
    return after - before
