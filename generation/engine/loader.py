"""Loading pipelines, placing them on the card by a memory plan, and keeping them warm.

A profile is loaded once per worker process and kept. A 12 GB card holds one real model at a
time, so loading a real profile first evicts any other real one (never FLUX and SDXL together).
Tiny profiles are a few MB and stay.

Placement (issue 18, item 1): before a real profile is loaded, ``generation.memory_plan`` picks the
fastest placement whose computed peak fits the card (its size from ``torch.cuda.mem_get_info``, or
``HOFFDESK_VRAM_GIB``, less ``HOFFDESK_VRAM_HEADROOM_GIB``) for the run's size, and
``apply_memory_plan`` turns it into diffusers' own calls. A later run whose plan differs only in VAE
tiling toggles tiling; one that needs another placement (a much larger size) loads the pipeline
again under it. On a CPU the plan is "CPU" and nothing is applied.

RAM cache (issue 18, item 6): with ``HOFFDESK_RAM_CACHE_GIB`` above 0, an evicted real pipeline is
parked in CPU memory instead of dropped (its hooks removed, its weights moved to RAM), up to that
many GiB, least recently used out first; asking for it again places it back on the card by its
plan, a copy instead of a load from disk (the run's ``load_seconds`` is that copy). Pipelines
placed with group or sequential offloading, or with the T5 streamed, are dropped as before: their
weights are spread over hooks that ``remove_all_hooks`` does not undo.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import logging
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from generation.engine import tiny
from generation.memory_plan import GIB, MemoryPlan, MemoryPlanError, cpu_plan, plan_memory, small_model_plan
from generation.memory_plan import components as plan_components
from generation.profiles import ModelProfile

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Components bitsandbytes quantized, saved after their first load on a card so later loads read
# nf4 weights instead of quantizing 12 B parameters again: ``<models>/quantized/<profile>/<component>``.
QUANTIZED_DIR = "quantized"

logger = logging.getLogger(__name__)


class EngineError(Exception):
    """A generation failed for a reason an editor or operator can act on."""


class ModelUnavailable(EngineError):
    pass


def pick_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def weights_source(profile: ModelProfile, models_dir: Path) -> str:
    """Where a profile's weights come from: its local folder when present, else its hub id."""
    folder = models_dir / profile.name
    if profile.tiny:
        return str(tiny.ensure_tiny(profile.name, folder))
    if (folder / "model_index.json").exists():
        return str(folder)
    assert profile.hub_id is not None
    return profile.hub_id


def _quantization_config(profile: ModelProfile, keep: tuple[str, ...] = ()) -> Any:
    """bitsandbytes nf4 for the profile's big components but those in ``keep`` (a T5 the plan
    keeps on the CPU: streamed layer by layer in its own dtype, never through bitsandbytes)."""
    if profile.quantization != "nf4":
        return None
    if importlib.util.find_spec("bitsandbytes") is None:
        raise EngineError(
            f"{profile.name} is quantized to 4-bit nf4 by bitsandbytes, which is not installed in this "
            "worker's environment: install the gpu extra (pip install -e '.[gpu]') and restart the worker."
        )
    from diffusers.quantizers import PipelineQuantizationConfig

    return PipelineQuantizationConfig(
        quant_backend="bitsandbytes_4bit",
        quant_kwargs={
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_compute_dtype": DTYPES[profile.dtype],  # type: ignore[dict-item]
        },
        components_to_quantize=[name for name in profile.quantize_components if name not in keep],
    )


def card_gib(device: str, override_gib: float | None = None) -> float | None:
    """The GPU memory a plan may use, in GiB: ``override_gib`` (``HOFFDESK_VRAM_GIB``) when set,
    else what the card has free now plus what this process already reserved (its own cached
    blocks are free to it); None on a CPU. Free, not total: the desktop and other programs keep
    theirs."""
    if device != "cuda":
        return None
    if override_gib:
        return override_gib
    free, _total = torch.cuda.mem_get_info()
    return (free + torch.cuda.memory_reserved()) / GIB


def choose_memory_plan(
    profile: ModelProfile,
    *,
    device: str,
    card: float | None,
    headroom_gib: float,
    width: int,
    height: int,
    images: int = 1,
    fp8_storage: bool = False,
) -> MemoryPlan:
    """The placement for one run: "CPU" without CUDA, everything on the GPU for a tiny model, else
    the planner's fastest fit (fp8 storage among the choices when ``fp8_storage`` and the card
    has it: ``fp8_supported``). A card too small for any placement is an ``EngineError`` before any
    weights are read (it would only run out of memory minutes later)."""
    if device != "cuda" or card is None:
        return cpu_plan()
    if profile.tiny:
        return small_model_plan()
    try:
        return plan_memory(
            profile,
            card_gib=card,
            headroom_gib=headroom_gib,
            width=width,
            height=height,
            images=images,
            fp8_storage=fp8_storage and fp8_supported(),
        )
    except MemoryPlanError as exc:
        raise EngineError(f"{exc}. Set HOFFDESK_VRAM_GIB or free GPU memory, or choose a smaller size.") from exc


def fp8_supported() -> bool:
    """Whether this card can hold weights in fp8 for layerwise casting: torch has the dtype, and the
    card is an Ampere or newer (compute capability 8.0+; the owner's RTX 3080 Ti is 8.6). The
    weights are only stored in fp8; each layer is cast back to bf16/fp16 to compute, so no fp8
    arithmetic (Ada's or Hopper's) is needed."""
    return (
        hasattr(torch, "float8_e4m3fn") and torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)
    )


def _denoiser_name(pipe: Any) -> str:
    return "unet" if getattr(pipe, "unet", None) is not None else "transformer"


def _t5_name(pipe: Any) -> str | None:
    """The component holding a T5 encoder (FLUX: text_encoder_2, SD3: text_encoder_3), if any."""
    for name, component in pipe.components.items():
        if type(component).__name__.startswith("T5"):
            return str(name)
    return None


def apply_memory_plan(pipe: Any, plan: MemoryPlan, *, device: str, vae_tiling: bool = False) -> None:
    """Place a freshly loaded ``pipe`` as ``plan`` says, with diffusers' own APIs.

    gpu: ``pipe.to(device)``; with the T5 on the CPU its weights stay in RAM and stream to the
    card one layer at a time (leaf-level group offloading, which ``pipe.to`` then leaves alone).
    model_cpu_offload: ``enable_model_cpu_offload``. group_offload: block-level group offloading
    of the denoiser (one block per group, CUDA streams so the next block's copy overlaps this
    one's compute), leaf-level for the other modules. sequential_cpu_offload:
    ``enable_sequential_cpu_offload``. cpu: ``pipe.to("cpu")``, nothing else. With ``plan.fp8``,
    the denoiser's weights are stored in fp8 first (``enable_layerwise_casting``).
    Then VAE tiling when the plan or the profile asks (``set_vae_tiling``).
    """
    from diffusers.hooks import apply_group_offloading

    if plan.fp8:  # before placement: the hooks cast each layer up as it runs, wherever it is
        denoiser = pipe.components[_denoiser_name(pipe)]
        denoiser.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=denoiser.dtype)
    streams = device == "cuda"
    if plan.strategy in ("cpu", "gpu"):
        t5 = _t5_name(pipe) if plan.t5_on_cpu else None
        if t5 is not None:
            apply_group_offloading(
                pipe.components[t5], onload_device=device, offload_type="leaf_level", use_stream=streams
            )
        pipe.to(device)
    elif plan.strategy == "model_cpu_offload":
        pipe.enable_model_cpu_offload(device=device)
    elif plan.strategy == "group_offload":
        denoiser = _denoiser_name(pipe)
        for name, component in pipe.components.items():
            if not isinstance(component, torch.nn.Module):
                continue
            if name == denoiser:
                apply_group_offloading(
                    component,
                    onload_device=device,
                    offload_type="block_level",
                    num_blocks_per_group=1,
                    use_stream=streams,
                )
            else:
                apply_group_offloading(component, onload_device=device, offload_type="leaf_level", use_stream=streams)
    elif plan.strategy == "sequential_cpu_offload":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        raise EngineError(f"unknown memory strategy {plan.strategy!r}")
    set_vae_tiling(pipe, plan.vae_tiling or vae_tiling)


def set_vae_tiling(pipe: Any, tiled: bool) -> None:
    """Decode in tiles (bounded memory above a size) or whole (faster, and byte-stable at small sizes)."""
    if tiled:
        pipe.vae.enable_tiling()
    else:
        pipe.vae.disable_tiling()


def reset_peak_memory() -> None:
    """Start counting a run's peak GPU memory from now (nothing on a CPU)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_reserved_bytes() -> int | None:
    """The most GPU memory this process reserved since ``reset_peak_memory``; None on a CPU."""
    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.max_memory_reserved())


def load_pipeline(
    profile: ModelProfile, models_dir: Path, device: str, plan: MemoryPlan | None = None, load_delay: float = 0.0
) -> Any:
    """Load ``profile`` through diffusers' ``from_pretrained`` and place it by ``plan`` (default:
    the profile's own memory setting, as before plans existed). ``load_delay``: seconds slept
    after reading the weights, for the switching benchmark and tests only (a tiny model loads in
    a blink; a real one in tens of seconds)."""
    import diffusers

    pipeline_class = getattr(diffusers, profile.pipeline_class)
    source = weights_source(profile, models_dir)
    kwargs: dict[str, Any] = {"dtype": DTYPES[profile.dtype] if device == "cuda" else torch.float32}
    keep: tuple[str, ...] = ()
    if plan is not None and plan.t5_on_cpu and profile.is_real:
        keep = tuple(part.name for part in plan_components(profile) if part.role == "t5")
    quantization = _quantization_config(profile, keep) if device == "cuda" else None
    to_save: list[str] = []
    if quantization is not None:
        wanted = [name for name in profile.quantize_components if name not in keep]
        saved = prequantized_components(pipeline_class, source, models_dir / QUANTIZED_DIR / profile.name, wanted)
        kwargs.update(saved)
        to_save = [name for name in wanted if name not in saved]
        quantization = _quantization_config(profile, keep + tuple(saved))
        if quantization is not None and to_save:
            kwargs["quantization_config"] = quantization
    try:
        pipe = pipeline_class.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        if source == profile.hub_id:
            raise ModelUnavailable(
                f"The weights of {profile.name} ({profile.hub_id}) are not on this machine. "
                f"Run `manage.py fetch_models {profile.name}` where the Hugging Face hub is "
                f"reachable, or put a diffusers folder at {models_dir / profile.name}. ({exc})"
            ) from exc
        raise
    if to_save:
        save_quantized_components(pipe, models_dir / QUANTIZED_DIR / profile.name, to_save)
    if load_delay:
        time.sleep(load_delay)
    # Without a plan, the profile's own memory settings, as before plans existed; with one, the
    # plan alone decides (so the run card's line is what was applied).
    vae_tiling = False
    if plan is None:
        plan = cpu_plan() if device != "cuda" else small_model_plan()
        if device == "cuda" and profile.memory == "model_cpu_offload":
            plan = MemoryPlan("model_cpu_offload", False, False, 0.0, "model offload")
        vae_tiling = profile.vae_tiling
    apply_memory_plan(pipe, plan, device=device, vae_tiling=vae_tiling)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prequantized_components(pipeline_class: Any, source: str, folder: Path, names: list[str]) -> dict[str, Any]:
    """Each of ``names`` saved already quantized in ``folder`` (``save_quantized_components``),
    loaded as its class in the pipeline's ``model_index.json`` says: its config carries the
    quantization, so the weights are read as they are. One that is missing or does not load (a
    library upgrade, a half-copied folder) is left out with a log line, and quantized again."""
    found: dict[str, Any] = {}
    if not any((folder / name / "config.json").exists() for name in names):
        return found
    try:
        index = pipeline_class.load_config(source)
    except Exception:
        logger.warning("no model_index.json for %s; quantizing again", source, exc_info=True)
        return found
    for name in names:
        if not (folder / name / "config.json").exists():
            continue
        try:
            library, class_name = index[name]
            component_class = getattr(importlib.import_module(library), class_name)
            found[name] = component_class.from_pretrained(folder / name)
        except Exception:
            logger.warning("the saved quantized %s in %s did not load; quantizing again", name, folder, exc_info=True)
    return found


def save_quantized_components(pipe: Any, folder: Path, names: list[str]) -> None:
    """Save each of ``names`` as the pipeline holds it (quantized by bitsandbytes on this load)
    into ``folder/<name>``, whole or not at all: written beside, then renamed into place. A
    failure (a full disk) is logged and costs only the next load's quantization."""
    for name in names:
        target = folder / name
        partial = folder / f".{name}.partial"
        try:
            shutil.rmtree(partial, ignore_errors=True)
            partial.parent.mkdir(parents=True, exist_ok=True)
            pipe.components[name].save_pretrained(partial)
            shutil.rmtree(target, ignore_errors=True)  # one that did not load (prequantized_components)
            partial.rename(target)
            logger.info("saved the quantized %s in %s: later loads read it as it is", name, target)
        except Exception:
            shutil.rmtree(partial, ignore_errors=True)
            logger.warning("could not save the quantized %s in %s", name, folder, exc_info=True)


def quiet_libraries() -> None:
    """No per-load progress bars or tokenizer length warnings in the worker's log."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


class LoadListener(Protocol):
    """Told when the cache starts loading a profile and what is loaded after (the worker's
    heartbeat says so: ``generation.health.worker_models``)."""

    def loading(self, profile: ModelProfile) -> None: ...

    def loaded(self, profile: ModelProfile | None) -> None: ...


class _NoListener:
    def loading(self, profile: ModelProfile) -> None:
        pass

    def loaded(self, profile: ModelProfile | None) -> None:
        pass


@dataclass
class _Warm:
    profile: ModelProfile
    pipe: Any
    plan: MemoryPlan
    # Built and placed by its maker (``put``: benchmarks), with no weights on disk to load again:
    # kept as placed whatever a later run's plan says.
    fixed: bool = False


class PipelineCache:
    """Warm pipelines of one worker process, by profile name.

    ``current`` is the profile of the last run (on a 12 GB card, the one on the GPU): the worker
    claims runs of it first (``GenerationRun.claim_order``). One lock: a preload thread at worker
    start and the first task never load the same model twice, and the task waits for it.
    ``one_at_a_time`` treats every profile as big (the switching benchmark, with ``load_delay``).
    """

    def __init__(
        self,
        models_dir: Path,
        device: str | None = None,
        *,
        vram_gib: float | None = None,
        headroom_gib: float = 1.0,
        listener: LoadListener | None = None,
        load_delay: float = 0.0,
        one_at_a_time: bool = False,
        ram_cache_gib: float = 0.0,
        fp8_storage: bool = False,
    ) -> None:
        self.models_dir = models_dir
        self.device = device or pick_device()
        self.vram_gib = vram_gib
        self.headroom_gib = headroom_gib
        self.listener: LoadListener = listener or _NoListener()
        self.load_delay = load_delay
        self.one_at_a_time = one_at_a_time
        self.current: str | None = None
        self._lock = threading.RLock()
        self.ram_cache_gib = ram_cache_gib
        self.fp8_storage = fp8_storage
        quiet_libraries()
        self._pipes: dict[str, _Warm] = {}
        # Evicted big pipelines kept in RAM (the RAM cache), least recently parked first.
        self._parked: OrderedDict[str, tuple[_Warm, int]] = OrderedDict()

    def loaded(self) -> list[str]:
        return list(self._pipes)

    def parked(self) -> list[str]:
        """The evicted pipelines the RAM cache holds, least recently parked first."""
        return list(self._parked)

    def plan_label(self, name: str) -> str:
        """The memory plan the warm pipeline of ``name`` runs under ("" when none is warm)."""
        warm = self._pipes.get(name)
        return warm.plan.label if warm is not None else ""

    def _is_big(self, profile: ModelProfile) -> bool:
        return profile.is_real or self.one_at_a_time

    def get(
        self, profile: ModelProfile, *, width: int | None = None, height: int | None = None, images: int = 1
    ) -> tuple[Any, float]:
        """The warm pipeline for ``profile``, placed for a run of ``images`` at ``width`` x
        ``height`` (default: the profile's native size), and the seconds spent loading it (0.0
        when warm)."""
        with self._lock:
            plan = choose_memory_plan(
                profile,
                device=self.device,
                card=card_gib(self.device, self.vram_gib),
                headroom_gib=self.headroom_gib,
                width=width or profile.native_width,
                height=height or profile.native_height,
                images=images,
                fp8_storage=self.fp8_storage,
            )
            warm = self._pipes.get(profile.name)
            if warm is not None and warm.fixed:
                self.current = profile.name
                return warm.pipe, 0.0
            if warm is not None and _placement(warm.plan) == _placement(plan):
                if warm.plan.vae_tiling != plan.vae_tiling:
                    set_vae_tiling(warm.pipe, plan.vae_tiling)
                    warm.plan = plan
                if self.current != profile.name:  # a switch between warm (tiny) models
                    self.current = profile.name
                    self.listener.loaded(profile)
                return warm.pipe, 0.0
            if warm is not None:  # another placement: load again under it, never two copies
                del self._pipes[profile.name]
                free_memory()
            if self._is_big(profile):
                self.evict_big()
            started = time.perf_counter()
            parked = self._parked.pop(profile.name, None)
            if parked is not None and _placement(parked[0].plan) == _placement(plan):
                self.listener.loading(profile)
                apply_memory_plan(parked[0].pipe, plan, device=self.device)  # a copy from RAM, not a load
                self._pipes[profile.name] = _Warm(profile, parked[0].pipe, plan)
                self.current = profile.name
                self.listener.loaded(profile)
                return parked[0].pipe, time.perf_counter() - started
            if parked is not None:  # parked under another placement: load again, never two copies
                del parked
                free_memory()
            self.listener.loading(profile)
            try:
                pipe = load_pipeline(profile, self.models_dir, self.device, plan, load_delay=self.load_delay)
            except BaseException:
                still = self._pipes.get(self.current) if self.current else None
                self.listener.loaded(still.profile if still is not None else None)
                raise
            self._pipes[profile.name] = _Warm(profile, pipe, plan)
            self.current = profile.name
            self.listener.loaded(profile)
            return pipe, time.perf_counter() - started

    def put(self, profile: ModelProfile, pipe: Any, plan: MemoryPlan | None = None) -> None:
        """Keep an already built pipeline warm (benchmarks build full-size random-weight models),
        placed as its maker placed it (``plan``: the one it applied, for the label)."""
        with self._lock:
            if self._is_big(profile):
                self.evict_big()
            self._pipes[profile.name] = _Warm(profile, pipe, plan or cpu_plan(), fixed=True)
            self.current = profile.name

    def evict_big(self) -> None:
        """Take every real (big) pipeline off the card, so the next one has the whole card:
        parked in the RAM cache where it fits, else dropped."""
        with self._lock:
            big = [name for name, warm in self._pipes.items() if self._is_big(warm.profile)]
            for name in big:
                self._park(self._pipes.pop(name))
            if self.current in big:
                self.current = None
            if big:
                free_memory()

    def _park(self, warm: _Warm) -> None:
        """Keep an evicted pipeline in RAM when the RAM cache takes it (see the module's doc)."""
        budget = int(self.ram_cache_gib * GIB)
        parkable = (
            warm.plan.strategy in ("cpu", "gpu", "model_cpu_offload") and not warm.plan.t5_on_cpu and not warm.plan.fp8
        )
        if budget <= 0 or warm.fixed or not parkable:
            return
        size = pipeline_bytes(warm.pipe)
        if size > budget:
            return
        while self._parked and sum(bytes_ for _, bytes_ in self._parked.values()) + size > budget:
            self._parked.popitem(last=False)  # the least recently parked goes
        if self.device != "cpu":
            warm.pipe.remove_all_hooks()  # model offload's accelerate hooks; nothing for "gpu"
            warm.pipe.to("cpu")
        self._parked[warm.profile.name] = (warm, size)


def _placement(plan: MemoryPlan) -> tuple[str, bool, bool]:
    """What a loaded pipeline cannot change without loading again (VAE tiling it can)."""
    return plan.strategy, plan.t5_on_cpu, plan.fp8


def pipeline_bytes(pipe: Any) -> int:
    """The bytes of a pipeline's weights and buffers, all its torch modules together."""
    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in (*component.parameters(), *component.buffers()))
    return total


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
