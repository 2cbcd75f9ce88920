"""The cloud engine: images from an OpenAI Images API server, opt-in and capped (issue 20).

Off until ``HOFFDESK_CLOUD_API_KEY`` is set: then nothing here is offered or run. A cloud run is
a ``GenerationRun`` like any other, queued on the light cluster (no GPU needed), whose price was
taken from the month's budget (``CloudSpend.take``, one conditional UPDATE) in the transaction
that created it, so two requests at once never pass the budget together and a refusal comes
before anything is queued. ``cloud_cost`` set is what marks it (``GenerationRun.runs_in_cloud``).

The server picks the noise: there is no seed, so a cloud image cannot be made again. Its
candidates say so ("cloud: not reproducible"), record model, revised prompt and price in the PNG's
recipe, and ``run_regenerate`` refuses every mode for it (none has a seed to re-run, and more
images cost money: the button asks, showing the price).

When: an editor's **Make in the cloud** (``gallery.views_cloud``), or a preset's
``cloud_fallback`` through the periodic sweep (``cloud_fallback_sweep``): its queued runs move to
the cloud when no GPU worker was seen for ``HOFFDESK_CLOUD_AFTER_MINUTES``, and a run that failed
twice (two attempts, or the article's previous run of that preset failed too) is made again there.

No torch here: the web imports it for prices and the button; only the worker calls the API.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from generation.models import CloudSpend, GenerationRun, StylePreset
from generation.results import GeneratedImage, GenerationResult

logger = logging.getLogger(__name__)

CLOUD_PREFIX = "cloud:"
# The hero's shape (landscape) in each model's own sizes, and the quality the price table is for.
LANDSCAPE_SIZES = {
    "gpt-image-1": (1536, 1024),
    "gpt-image-1-mini": (1536, 1024),
    "dall-e-3": (1792, 1024),
    "dall-e-2": (1024, 1024),
}
QUALITY = {"gpt-image-1": "medium", "gpt-image-1-mini": "medium", "dall-e-3": "standard"}
NOT_REPRODUCIBLE = "cloud: not reproducible"
# The PNG text chunks every candidate carries (generation.engine.metadata's names; the web side
# never imports the engine package, so they are repeated here).
PARAMETERS_CHUNK, RECIPE_CHUNK, PNG_COMPRESS_LEVEL = "parameters", "hoffdesk", 1


class CloudError(Exception):
    """The cloud server refused or failed; ``made`` images came back before it did."""

    def __init__(self, message: str, made: int = 0) -> None:
        super().__init__(message)
        self.made = made


class CloudCancelled(Exception):
    """An editor cancelled the run between two images."""

    def __init__(self, made: int) -> None:
        super().__init__(f"cancelled after {made} images")
        self.made = made


class CloudBudgetExceeded(ValidationError):
    """The month's cloud budget cannot pay for this request; the message says what is left."""


def cloud_enabled() -> bool:
    return bool(settings.HOFFDESK_CLOUD_API_KEY)


def cloud_size(model: str) -> tuple[int, int]:
    """``HOFFDESK_CLOUD_SIZE``, else the model's landscape size, else 1024x1024."""
    if settings.HOFFDESK_CLOUD_SIZE:
        width, _, height = settings.HOFFDESK_CLOUD_SIZE.partition("x")
        return int(width), int(height)
    return LANDSCAPE_SIZES.get(model, (1024, 1024))


def money(amount: Decimal) -> str:
    """ "0.063 USD", "10.00 USD": at least two decimals, at most four, in the table's currency."""
    text = f"{amount.quantize(Decimal('0.0001')):f}".rstrip("0")
    whole, _, cents = text.partition(".")
    return f"{whole}.{cents.ljust(2, '0')} {settings.HOFFDESK_CURRENCY}"


def this_month() -> date:
    return timezone.localdate().replace(day=1)


@dataclass(frozen=True)
class CloudQuote:
    """What a cloud request of ``count`` images costs now and what the month has left."""

    model: str
    width: int
    height: int
    price: Decimal
    count: int
    budget: Decimal
    spent: Decimal

    @property
    def total(self) -> Decimal:
        return self.price * self.count

    @property
    def left(self) -> Decimal:
        return max(Decimal(0), self.budget - self.spent)

    @property
    def affordable(self) -> bool:
        return self.total <= self.left

    def refusal(self) -> str:
        return (
            f"The cloud budget for {this_month():%B %Y} cannot pay for this: {self.count} image(s) from "
            f"{self.model} cost {money(self.total)} and {money(self.left)} is left of {money(self.budget)} "
            "(HOFFDESK_CLOUD_MONTHLY_BUDGET). Nothing was queued."
        )


def cloud_quote(*, count: int = 1) -> CloudQuote:
    model = settings.HOFFDESK_CLOUD_MODEL
    width, height = cloud_size(model)
    row = CloudSpend.objects.filter(month=this_month()).first()
    return CloudQuote(
        model=model,
        width=width,
        height=height,
        price=settings.HOFFDESK_CLOUD_PRICES[model],
        count=count,
        budget=Decimal(str(settings.HOFFDESK_CLOUD_MONTHLY_BUDGET)),
        spent=row.spent if row else Decimal(0),
    )


def _count(value: Any) -> int:
    from generation.validation import MAX_IMAGES

    try:
        count = int(value if value not in (None, "") else 1)
    except (TypeError, ValueError):
        message = f"count must be a whole number from 1 to {MAX_IMAGES}, not {value!r}."
        raise ValidationError({"count": message}) from None
    if not 1 <= count <= MAX_IMAGES:
        raise ValidationError({"count": f"count must be a whole number from 1 to {MAX_IMAGES}, not {count}."})
    return count


def _take_budget(quote: CloudQuote) -> None:
    """Inside the caller's transaction: the price out of the month's budget, or a refusal."""
    if not CloudSpend.take(month=this_month(), amount=quote.total, images=quote.count, budget=quote.budget):
        raise CloudBudgetExceeded({"count": cloud_quote(count=quote.count).refusal()})


def _cloud_fields(quote: CloudQuote) -> dict[str, Any]:
    """What every cloud run records instead of a local recipe: no seed, no steps."""
    return {
        "model_profile": CLOUD_PREFIX + quote.model,
        "engine_profile": CLOUD_PREFIX + quote.model,
        "width": quote.width,
        "height": quote.height,
        "steps": 0,
        "guidance": 0.0,
        "base_seed": 0,
        "count": quote.count,
        "cloud_cost": quote.total,
        "progress_total": quote.count,
    }


def cloud_run_submit(
    *,
    article: Any,
    prompt: str | None = None,
    preset: StylePreset | None = None,
    count: Any = None,
    requested_by: Any = None,
    parent: GenerationRun | None = None,
    requested_via: str = "",
    note: str = "",
) -> GenerationRun:
    """Take the price from the month's budget and queue a cloud run, in one transaction.

    Refused (``CloudBudgetExceeded``, naming what is left) when the budget cannot pay for it;
    ``ValidationError`` naming the field for bad input. Without a prompt, the article's hero
    template is filled in as for the Magic Wand.
    """
    from generation.services import preset_for_article, prompt_for_article, run_enqueue

    if not cloud_enabled():
        raise ValidationError({"cloud": "The cloud engine is off: HOFFDESK_CLOUD_API_KEY is not set."})
    quote = cloud_quote(count=_count(count))
    preset = preset or (preset_for_article(article=article) if article is not None else None)
    template, source = None, "typed"
    if not (prompt or "").strip():
        if article is None:
            raise ValidationError({"prompt": "prompt must not be empty."})
        prompt, template = prompt_for_article(article=article, preset=preset)
        source = "template"
    user = requested_by if getattr(requested_by, "is_authenticated", False) else None
    with transaction.atomic():
        _take_budget(quote)
        run = GenerationRun.objects.create(
            article=article,
            preset=preset,
            prompt=prompt or "",
            prompt_source=source,
            prompt_template=template,
            parent=parent,
            requested_by=user,
            requested_via=requested_via,
            engine_note=note or f"Made in the cloud by {quote.model} at {money(quote.price)} an image.",
            **_cloud_fields(quote),
        )
        if article is not None:
            type(article).objects.filter(pk=article.pk).update(updated_at=timezone.now())
        run_enqueue(run=run)
    return run


def cloud_give_back(*, run: GenerationRun, made: int) -> None:
    """The run ended with ``made`` of its images: the budget gets back the price of the others
    (the cloud charges only for images it returned), and the run records what it really cost."""
    if run.cloud_cost is None or run.count <= made:
        return
    price = run.cloud_cost / run.count
    month = timezone.localdate(run.queued_at).replace(day=1)
    with transaction.atomic():
        CloudSpend.give_back(month=month, amount=price * (run.count - made), images=run.count - made)
        GenerationRun.objects.filter(pk=run.pk).update(cloud_cost=price * made)


# --- the engine (worker side) ---------------------------------------------------------------


def _png_with_recipe(image_bytes: bytes, recipe: dict[str, Any]) -> tuple[bytes, int, int]:
    """The server's image as our PNG, with the recipe in our chunks (Pillow only)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    parameters = (
        f"{recipe['prompt']}\nModel: {recipe['model']}, Size: {recipe['width']}x{recipe['height']}, "
        f"Cloud price: {recipe['price']} {recipe['currency']}, Seed: none ({NOT_REPRODUCIBLE}), "
        f"Revised prompt: {json.dumps(recipe['revised_prompt'])}"
    )
    info.add_text(PARAMETERS_CHUNK, parameters)
    info.add_text(RECIPE_CHUNK, json.dumps(recipe, sort_keys=True))
    with Image.open(io.BytesIO(image_bytes)) as image:
        image.load()
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
        return buffer.getvalue(), image.width, image.height


def _request_options(model: str, width: int, height: int) -> dict[str, Any]:
    options: dict[str, Any] = {"model": model, "n": 1, "size": f"{width}x{height}"}
    if model in QUALITY:
        options["quality"] = QUALITY[model]
    if model.startswith("dall-e"):  # GPT Image models always answer base64 and refuse the field
        options["response_format"] = "b64_json"
    return options


def _image_bytes(item: Any, timeout: float) -> bytes:
    if getattr(item, "b64_json", None):
        return base64.b64decode(item.b64_json)
    if getattr(item, "url", None):
        import httpx

        response = httpx.get(item.url, timeout=timeout, follow_redirects=True)
        response.raise_for_status()
        return response.content
    raise CloudError("the server answered no image (neither b64_json nor url)")


def cloud_generate(run: GenerationRun, on_image: Callable[[int, int], bool]) -> GenerationResult:
    """Ask the cloud for the run's images one by one (DALL-E 3 makes one per request anyway), so
    progress and cancel work between images: ``on_image(done, total)`` False stops the run."""
    import openai

    model = run.model_profile.removeprefix(CLOUD_PREFIX)
    price = (run.cloud_cost or Decimal(0)) / max(run.count, 1)
    client = openai.OpenAI(
        api_key=settings.HOFFDESK_CLOUD_API_KEY,
        base_url=settings.HOFFDESK_CLOUD_BASE_URL,
        timeout=settings.HOFFDESK_CLOUD_TIMEOUT,
        max_retries=0,  # a retried generation is paid twice; the run fails with the reason instead
    )
    images: list[GeneratedImage] = []
    started = time.monotonic()
    for index in range(run.count):
        try:
            answer = client.images.generate(prompt=run.prompt, **_request_options(model, run.width, run.height))
            item = (answer.data or [None])[0]
            raw = _image_bytes(item, settings.HOFFDESK_CLOUD_TIMEOUT)
        except openai.APIStatusError as exc:
            raise CloudError(f"{model} answered {exc.status_code}: {_api_message(exc)}", made=index) from exc
        except openai.APIError as exc:  # connection refused, timeout
            raise CloudError(f"{model} could not be reached: {exc}", made=index) from exc
        except CloudError as exc:
            raise CloudError(str(exc), made=index) from exc
        except Exception as exc:
            raise CloudError(f"{model}'s answer was not an image: {exc}", made=index) from exc
        recipe = {
            "engine": "cloud",
            "model": model,
            "prompt": run.prompt,
            "revised_prompt": getattr(item, "revised_prompt", None) or run.prompt,
            "price": f"{price:f}",
            "currency": settings.HOFFDESK_CURRENCY,
            "width": run.width,
            "height": run.height,
            "reproducible": False,
            "index": index,
        }
        png, width, height = _png_with_recipe(raw, recipe)
        images.append(
            GeneratedImage(
                index=index, seed=0, png=png, sha256=hashlib.sha256(png).hexdigest(), width=width, height=height
            )
        )
        if not on_image(index + 1, run.count):
            raise CloudCancelled(made=index + 1)
    return GenerationResult(images=images, load_seconds=0.0, inference_seconds=time.monotonic() - started)


def _api_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(getattr(exc, "message", exc))


# --- automatic fallback (the light cluster's periodic sweep) -------------------------------


def cloud_fallback_sweep() -> dict[str, list[int]]:
    """Runs of presets with ``cloud_fallback``: queued ones move to the cloud while no GPU
    worker has been seen for ``HOFFDESK_CLOUD_AFTER_MINUTES``; a run that failed twice is made
    again there. Each within the budget; a refusal is logged and the run left as it is."""
    done: dict[str, list[int]] = {"moved": [], "remade": []}
    if not cloud_enabled():
        return done
    from generation.health import newest_worker

    _, age = newest_worker()
    if age is None or age >= settings.HOFFDESK_CLOUD_AFTER_MINUTES * 60:
        done["moved"] = _move_waiting_runs(age)
    done["remade"] = _remake_failed_runs()
    return done


def _move_waiting_runs(age: float | None) -> list[int]:
    from generation.services import run_enqueue

    waiting = GenerationRun.objects.filter(
        status=GenerationRun.Status.QUEUED, cloud_cost__isnull=True, preset__cloud_fallback=True
    ).values_list("pk", "count")
    seen = "has ever been seen" if age is None else f"was seen for {age / 60:.0f} minutes"
    moved = []
    for run_id, count in waiting:
        quote = cloud_quote(count=count)
        try:
            with transaction.atomic():
                _take_budget(quote)
                # One conditional UPDATE: a GPU worker that claimed it meanwhile keeps it.
                won = GenerationRun.objects.filter(
                    pk=run_id, status=GenerationRun.Status.QUEUED, cloud_cost__isnull=True
                ).update(
                    engine_note=f"No GPU worker {seen}: made in the cloud by {quote.model} "
                    f"at {money(quote.price)} an image (the preset's cloud fallback).",
                    hires_scale=None,
                    variation_seed=None,
                    variation_strength=0.0,
                    draft=False,
                    draft_cache={},
                    comfy_workflow=None,
                    **_cloud_fields(quote),
                )
                if not won:
                    transaction.set_rollback(True)
                    continue
                run_enqueue(run=GenerationRun.objects.get(pk=run_id))
        except CloudBudgetExceeded as exc:
            logger.warning("run %s: cloud fallback refused: %s", run_id, " ".join(exc.messages))
            continue
        logger.warning("run %s: no GPU worker %s; moved to the cloud", run_id, seen)
        moved.append(run_id)
    return moved


def _remake_failed_runs() -> list[int]:
    failed = GenerationRun.objects.filter(
        status=GenerationRun.Status.FAILED,
        cloud_cost__isnull=True,
        preset__cloud_fallback=True,
        article__isnull=False,
        finished_at__gte=timezone.now() - timedelta(days=1),
    ).select_related("article", "preset", "requested_by")
    remade = []
    for run in failed:
        later = GenerationRun.objects.filter(article=run.article, queued_at__gt=run.queued_at)
        if later.exists() or run.children.exists():
            continue  # someone (or this sweep) already tried again
        previous = (
            GenerationRun.objects.filter(article=run.article, preset=run.preset, queued_at__lt=run.queued_at)
            .order_by("-queued_at")
            .first()
        )
        if run.attempts < 2 and (previous is None or previous.status != GenerationRun.Status.FAILED):
            continue
        try:
            child = cloud_run_submit(
                article=run.article,
                prompt=run.prompt,
                preset=run.preset,
                count=run.count,
                requested_by=run.requested_by,
                parent=run,
                note=(
                    f"The local run failed twice ({run.error[:200]}): made in the cloud (the preset's cloud fallback)."
                ),
            )
        except CloudBudgetExceeded as exc:
            logger.warning("run %s: cloud fallback refused: %s", run.pk, " ".join(exc.messages))
            continue
        logger.warning("run %s failed twice; run %s makes it in the cloud", run.pk, child.pk)
        remade.append(child.pk)
    return remade
