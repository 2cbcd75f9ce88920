"""GPU energy per run (issue 20, part 1): the board's counter read before and after the run, or
``HOFFDESK_GPU_WATTS`` x GPU seconds labelled as an estimate.

This machine has no NVIDIA GPU, so NVML cannot be read here: ``RisingCounter`` below stands in
for it. It is a reader like the NVML one (a total-energy counter in joules that only grows),
plugged in through ``HOFFDESK_ENERGY_READER`` exactly as another vendor's reader would be.
"""

from __future__ import annotations

import pytest

from generation import tasks
from generation.energy import NvmlReader, energy_between, energy_reader
from generation.models import GenerationRun
from generation.services import run_submit

pytestmark = pytest.mark.usefixtures("fixed_threads")


class RisingCounter:
    """Stands in for NVML's total-energy counter: each read is 250 J more than the last."""

    STEP = 250.0

    def __init__(self) -> None:
        self.joules = 7_500_000.0

    def total_joules(self) -> float:
        self.joules += self.STEP
        return self.joules


class BrokenCounter:
    """A counter whose read fails, as NVML does on a card that has no energy counter."""

    def total_joules(self) -> float:
        raise RuntimeError("NVML: Not Supported")


def tiny_run(article) -> GenerationRun:  # type: ignore[no-untyped-def]
    run = run_submit(article=article, model="tiny-sd", width=64, height=64, steps=1, count=2, seed=11)
    assert tasks.run_generate(run.pk) == "succeeded", GenerationRun.objects.get(pk=run.pk).error
    return GenerationRun.objects.get(pk=run.pk)


@pytest.fixture
def worker_settings(settings, models_dir):  # type: ignore[no-untyped-def]
    settings.HOFFDESK_MODELS_DIR = models_dir
    tasks._cache = None
    return settings


@pytest.mark.django_db(transaction=True)
def test_a_rising_counter_records_the_difference_read_before_and_after_the_run(article, worker_settings) -> None:
    worker_settings.HOFFDESK_ENERGY_READER = f"{__name__}.RisingCounter"
    run = tiny_run(article)
    assert run.energy_joules == RisingCounter.STEP
    assert run.energy_estimated is False


@pytest.mark.django_db(transaction=True)
def test_without_a_reader_the_run_records_watts_times_gpu_seconds_as_an_estimate(article, worker_settings) -> None:
    worker_settings.HOFFDESK_ENERGY_READER = "estimate"
    worker_settings.HOFFDESK_GPU_WATTS = 350.0
    run = tiny_run(article)
    assert run.gpu_seconds is not None and run.gpu_seconds > 0
    assert run.energy_joules == pytest.approx(350.0 * run.gpu_seconds, rel=1e-9)
    assert run.energy_estimated is True


@pytest.mark.django_db(transaction=True)
def test_a_counter_that_cannot_be_read_falls_back_to_the_estimate(article, worker_settings) -> None:
    worker_settings.HOFFDESK_ENERGY_READER = f"{__name__}.BrokenCounter"
    worker_settings.HOFFDESK_GPU_WATTS = 200.0
    run = tiny_run(article)
    assert run.gpu_seconds is not None
    assert run.energy_joules == pytest.approx(200.0 * run.gpu_seconds, rel=1e-9)
    assert run.energy_estimated is True


@pytest.mark.django_db(transaction=True)
def test_zero_watts_records_no_estimate(article, worker_settings) -> None:
    worker_settings.HOFFDESK_ENERGY_READER = "estimate"
    worker_settings.HOFFDESK_GPU_WATTS = 0.0
    run = tiny_run(article)
    assert (run.energy_joules, run.energy_estimated) == (None, False)


def test_energy_between_refuses_a_counter_that_went_backwards_or_was_not_read() -> None:
    assert energy_between(1000.0, 1250.5) == 250.5
    assert energy_between(1000.0, 900.0) is None  # the driver reloaded: the counter started again
    assert energy_between(None, 900.0) is None
    assert energy_between(1000.0, None) is None


def test_readers_by_name() -> None:
    assert energy_reader("estimate") is None
    assert isinstance(energy_reader(f"{__name__}.RisingCounter"), RisingCounter)
    with pytest.raises(ValueError, match="HOFFDESK_ENERGY_READER"):
        energy_reader("no.such.module.Reader")


def test_auto_is_nvml_only_where_nvml_and_a_gpu_are_there() -> None:
    """Here: no nvidia-ml-py or no NVIDIA GPU, so "auto" finds no reader and the worker estimates."""
    reader = energy_reader("auto")
    assert reader is None or isinstance(reader, NvmlReader)
    if NvmlReader.open() is None:
        assert reader is None


@pytest.mark.django_db(transaction=True)
def test_a_reader_that_cannot_be_made_never_fails_the_run(article, worker_settings) -> None:
    worker_settings.HOFFDESK_ENERGY_READER = "no.such.module.Reader"
    run = tiny_run(article)  # succeeded: a cost setting is not a reason to lose the images
    assert run.energy_estimated is True
