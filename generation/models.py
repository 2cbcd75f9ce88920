"""Presets, prompt templates, runs and candidates.

The models own their state: every transition is one conditional UPDATE that names the state it
leaves, so two workers or two editors can never both win it. Each returns True when it won.
"""

from __future__ import annotations

import socket
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files.storage import Storage, storages
from django.db import models
from django.db.models import ExpressionWrapper, F, Q
from django.db.models.functions import Now
from django.utils import timezone

from generation.profiles import MAX_SEED, get_profile, hires_size, profile_choices
from hoffdesk_images.state import ConditionalTransitions


class ComfyWorkflow(models.Model):
    """A ComfyUI workflow in API format, with the mapping of our recipe fields to its node inputs
    (``generation.workflows``).

    Versioned like ``PromptTemplate``: rows are never edited; saving a changed graph or mapping
    in the admin makes the next version, and the presets that used the old one move to it. A run
    points at the exact version it ran and keeps the exact graph it sent per candidate
    (``GenerationRun.comfy_prompts``), so an edit never changes what an old run says it did.
    """

    name = models.SlugField(max_length=80)
    version = models.PositiveIntegerField(default=1)
    graph = models.JSONField(help_text="The API-format graph: node id -> {class_type, inputs}.")
    mapping = models.JSONField(
        default=dict, blank=True, help_text='Recipe field -> [node id, input name], e.g. {"seed": ["3", "seed"]}.'
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="unique_comfy_workflow_version")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class StylePreset(models.Model):
    """A house style: what is added to every prompt and how the image is made.

    Content-type presets (``content_types`` not empty) are what the Magic Wand picks for an
    article by default; image-style presets (``image_style``) are the choices offered beside the
    Magic Wand button. The image style ``auto`` carries no settings of its own: it means "the
    article's content-type preset".
    """

    name = models.CharField(max_length=80, unique=True)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    model_profile = models.CharField(
        max_length=40,
        blank=True,
        choices=profile_choices,
        help_text="Blank uses the site's default model (HOFFDESK_DEFAULT_MODEL).",
    )
    prompt_suffix = models.TextField(blank=True)
    negative_prompt = models.TextField(blank=True)
    palette = models.CharField(max_length=200, blank=True)
    art_direction = models.CharField(max_length=200, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True, help_text="Blank: the model's native size.")
    height = models.PositiveIntegerField(null=True, blank=True)
    steps = models.PositiveIntegerField(null=True, blank=True, help_text="Blank: the model's default.")
    guidance = models.FloatField(null=True, blank=True, help_text="Blank: the model's default.")
    # Hires fix: make width x height, enlarge by hires_scale, then an image-to-image pass. How a
    # 512-class model (SDXL Turbo) still ends at hero size; blank scale: no second pass.
    hires_scale = models.FloatField(null=True, blank=True, help_text="Enlarge by this (1 to 4); blank: no hires pass.")
    hires_upscaler = models.CharField(
        max_length=80, blank=True, default="", help_text='"lanczos" (default) or an upscaler file\'s name.'
    )
    hires_steps = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Steps of the hires pass.")
    hires_denoise = models.FloatField(null=True, blank=True, help_text="Denoising strength of the hires pass (0-1].")
    content_types = models.JSONField(default=list, blank=True, help_text="Content types it serves by default.")
    image_style = models.BooleanField(default=False, help_text="Offered as an image style beside the Magic Wand.")
    position = models.PositiveSmallIntegerField(default=100, help_text="Order in menus, smallest first.")
    # A ComfyUI workflow: runs of this preset go to the ComfyUI server (HOFFDESK_COMFYUI_URL)
    # instead of our diffusers worker; the model profile then only sets the size and step limits.
    comfy_workflow = models.ForeignKey(
        ComfyWorkflow,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="presets",
        help_text="Run on the ComfyUI server with this workflow instead of the diffusers worker.",
    )

    class ReviewPolicy(models.TextChoices):
        MANUAL = "manual", "Manual: an editor approves and publishes"
        AUTO_APPROVE = "auto_approve", "Auto-approve: the first candidate of each run is approved"
        AUTO_PUBLISH = "auto_publish", "Auto-publish: approved, then published after the grace period"

    review_policy = models.CharField(max_length=20, choices=ReviewPolicy.choices, default=ReviewPolicy.MANUAL)
    review_grace_minutes = models.PositiveIntegerField(
        default=30, help_text="Auto-publish waits this long after approving, so an editor can stop it."
    )
    cloud_fallback = models.BooleanField(
        default=False,
        help_text="Make this preset's runs in the cloud (when configured) if no GPU worker was seen for "
        "HOFFDESK_CLOUD_AFTER_MINUTES, or after the local run failed twice.",
    )
    drafts_by_default = models.BooleanField(
        default=False,
        help_text="The Magic Wand makes fast drafts (cache acceleration, fewer steps); an editor "
        "presses Final render on the keeper.",
    )

    AUTO = "auto"

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def output_size(self) -> str:
        """What this preset makes, hires pass included ("" when it leaves the size to the model)."""
        if not (self.width and self.height):
            return ""
        if not self.hires_scale:
            return f"{self.width}x{self.height}"
        multiple = get_profile(self.model_profile).size_multiple if self.model_profile else 8
        w, h = hires_size(self.width, self.height, self.hires_scale, multiple)
        return f"{w}x{h} ({self.width}x{self.height}, hires x{self.hires_scale:g})"


class PromptTemplate(models.Model):
    """Versioned prompt text with placeholders from the article and the preset (the list and the
    one renderer are in ``generation.prompts``).

    Rows are never edited: saving a changed template makes the next version
    (``PromptTemplate.objects.new_version``). A run keeps the final text and points at the exact
    version it used, so an edit never changes an old run.
    """

    name = models.SlugField(max_length=80)
    version = models.PositiveIntegerField(default=1)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="unique_template_version")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    def render(self, **values: str) -> str:
        from generation.prompts import prompt_render

        return prompt_render(self.text, values)


class RegenerateMode(models.TextChoices):
    """The ways an editor makes a new run from an old one (the new run's ``parent``)."""

    MORE = "more", "More like this run: the same recipe, new random seeds"
    COMPOSE = "compose", "Keep this composition: this candidate's seed, edited prompt or settings"
    EXACT = "exact", "Exact re-run: the same recipe, seeds and batch size (same bytes on this machine)"
    SEED = "seed", "Seed typed in"
    VARIATIONS = "variations", "Variations: this candidate's seed blended with new seeds"
    UPSCALE = "upscale", "Make hero size: this candidate enlarged by a hires pass, no new composition"
    FINAL = "final", "Final render: this draft's seed and prompt at full quality, no cache"

    @property
    def short_label(self) -> str:
        return str(self.label).split(":")[0]


class RequestedVia(models.TextChoices):
    DASHBOARD = "dashboard", "Dashboard"
    CLI = "cli", "Command line"
    API = "api", "JSON API"
    A1111 = "a1111", "AUTOMATIC1111 API"
    OPENAI = "openai", "OpenAI Images API"
    FILED = "filed", "Filed from the Inbox"


def worker_identity() -> str:
    import os

    return f"{socket.gethostname()}:{os.getpid()}"


class GenerationRun(ConditionalTransitions):
    """One request for N candidate images of an article.

    State machine (every arrow is one conditional UPDATE)::

        queued --claim--> running --succeed--> succeeded
          |                 |  \\--fail-------> failed
          |                 |   \\--cancel----> cancelled
          |                 \\--requeue (crash recovery, attempts < max)--> queued
          \\--cancel (before a worker takes it)--> cancelled

    ``attempts`` counts claims; the limit is ``HOFFDESK_RUN_MAX_ATTEMPTS``. A worker that dies
    is found by its silent heartbeat or its dead pid, and its run is queued again or failed.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    # None: a run made through an image API (AUTOMATIC1111, OpenAI) with no article; it is
    # listed in the Inbox until an editor files its candidates to an article.
    article = models.ForeignKey("gallery.Article", null=True, blank=True, on_delete=models.CASCADE, related_name="runs")
    preset = models.ForeignKey(StylePreset, null=True, blank=True, on_delete=models.SET_NULL)
    prompt_template = models.ForeignKey(PromptTemplate, null=True, blank=True, on_delete=models.SET_NULL)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    model_profile = models.CharField(max_length=40, help_text="The profile asked for.")
    engine_profile = models.CharField(
        max_length=40,
        blank=True,
        help_text="The profile that runs: the web's guess when queued, the claiming worker's choice after.",
    )
    engine_note = models.TextField(
        blank=True, help_text="Why a stand-in runs, e.g. no GPU worker has the weights of the profile asked for."
    )
    prompt = models.TextField()
    prompt_source = models.CharField(
        max_length=12,
        blank=True,
        choices=[("typed", "Typed"), ("template", "Prompt template"), ("llm", "Local LLM")],
        help_text="Who wrote the prompt.",
    )
    prompt_note = models.TextField(blank=True, help_text="Why the LLM writer was skipped, when it was.")
    prompt_warning = models.TextField(blank=True, help_text="For example: longer than the text encoder reads.")
    negative_prompt = models.TextField(blank=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    steps = models.PositiveIntegerField()
    guidance = models.FloatField()
    base_seed = models.PositiveBigIntegerField()
    count = models.PositiveSmallIntegerField()
    # Variations (AUTOMATIC1111's "variation seed"): every candidate starts from the noise of
    # ``base_seed`` blended by spherical interpolation with the noise of its own variation seed
    # (``variation_seed + index``) at ``variation_strength``. Strength 0 means a plain run.
    variation_seed = models.PositiveBigIntegerField(null=True, blank=True)
    variation_strength = models.FloatField(default=0.0)
    # Hires fix (``width`` x ``height`` is the first pass; the candidates are the enlarged size).
    hires_scale = models.FloatField(null=True, blank=True)
    hires_upscaler = models.CharField(max_length=80, blank=True, default="")
    hires_steps = models.PositiveSmallIntegerField(null=True, blank=True)
    hires_denoise = models.FloatField(null=True, blank=True)
    # "Make hero size": the candidate whose image is enlarged (its run keeps only the hires pass).
    source_candidate = models.ForeignKey(
        "Candidate", null=True, blank=True, on_delete=models.SET_NULL, related_name="enlargements"
    )
    regenerate_mode = models.CharField(
        max_length=20, blank=True, choices=RegenerateMode.choices, help_text="How a regeneration was asked for."
    )
    requested_via = models.CharField(
        max_length=12, blank=True, choices=RequestedVia.choices, help_text="Which door the request came through."
    )
    api_token = models.ForeignKey(
        "api.ApiToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs", help_text="Which token."
    )
    client_fields = models.JSONField(
        default=dict, blank=True, help_text="What the client sent that is recorded but not used (sampler, user...)."
    )
    # ComfyUI runs (the preset named a workflow): the exact version, and per candidate what was
    # sent: [{"index", "seed", "prompt_id", "graph"}], written before each prompt is queued so
    # that cancel and recovery can find it on the server.
    comfy_workflow = models.ForeignKey(
        ComfyWorkflow, null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    comfy_prompts = models.JSONField(default=list, blank=True)
    # Draft mode (fast culling): a cache acceleration on the transformer and fewer steps. The
    # recipe keeps the cache and its settings ({"kind": "FirstBlockCache", "threshold": 0.2});
    # empty: a full-quality run. "Final render" re-runs a draft's seed and prompt without it.
    draft = models.BooleanField(default=False)
    draft_cache = models.JSONField(default=dict, blank=True)
    # The memory plan the worker chose for this run on its card, in one line, and the peak
    # GPU memory it reserved (torch.cuda.max_memory_reserved); blank/None on a CPU.
    memory_plan = models.CharField(max_length=200, blank=True)
    peak_vram_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    # GPU energy the run used: the board's counter (NVML) read before and after, or
    # HOFFDESK_GPU_WATTS x GPU seconds with ``energy_estimated`` set (a CPU or demo worker records
    # this estimate too, labelled as such). None: HOFFDESK_GPU_WATTS=0, or a cloud run.
    energy_joules = models.FloatField(null=True, blank=True)
    energy_estimated = models.BooleanField(default=False)
    # A run made by the cloud engine (OpenAI Images API): what it cost in the price table's
    # currency. None for local runs.
    cloud_cost = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)

    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    cancel_requested = models.BooleanField(default=False)
    progress_step = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # The claiming worker's task timeout after the claim, on the database's clock: a run whose
    # worker is gone after this was killed by the timeout (or would have been), so it is failed
    # with that reason rather than queued again to be killed again.
    deadline_at = models.DateTimeField(null=True, blank=True)

    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    load_seconds = models.FloatField(null=True, blank=True)
    gpu_seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-queued_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(base_seed__lte=MAX_SEED), name="run_seed_fits_32_bits"),
            models.CheckConstraint(condition=Q(count__gte=1), name="run_count_positive"),
            models.CheckConstraint(
                condition=Q(variation_strength__gte=0, variation_strength__lte=1), name="run_variation_strength_0_1"
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.status})"

    @property
    def is_stand_in(self) -> bool:
        return bool(self.engine_profile) and self.engine_profile != self.model_profile

    @property
    def runs_on_comfyui(self) -> bool:
        return self.comfy_workflow_id is not None

    @property
    def runs_in_cloud(self) -> bool:
        """Made by the cloud engine (``generation.cloud``): its price was taken from the budget
        when it was queued. No seed: its images cannot be made again."""
        return self.cloud_cost is not None

    @property
    def profile_to_run(self) -> str:
        return self.engine_profile or self.model_profile

    @property
    def is_variation(self) -> bool:
        return self.variation_strength > 0 and self.variation_seed is not None

    @property
    def has_hires(self) -> bool:
        return self.hires_scale is not None

    @property
    def is_enlargement(self) -> bool:
        """A "Make hero size" run: the hires pass alone, on its source candidate's image."""
        return self.regenerate_mode == RegenerateMode.UPSCALE

    @property
    def output_size(self) -> tuple[int, int]:
        """The candidates' size: the hires pass's when there is one."""
        if self.hires_scale is None:
            return self.width, self.height
        return hires_size(self.width, self.height, self.hires_scale, get_profile(self.profile_to_run).size_multiple)

    @property
    def seeds(self) -> list[int]:
        """Each candidate's main seed: consecutive, or all the same for a variations run."""
        if self.is_variation:
            return [self.base_seed] * self.count
        return [self.base_seed + i for i in range(self.count)]

    @property
    def variation_seeds(self) -> list[int] | None:
        if not self.is_variation:
            return None
        assert self.variation_seed is not None
        return [self.variation_seed + i for i in range(self.count)]

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def regenerate_label(self) -> str:
        """ "Exact re-run", "Variations"...: how this run was made from its parent."""
        return RegenerateMode(self.regenerate_mode).short_label if self.regenerate_mode else ""

    @property
    def elapsed_seconds(self) -> float | None:
        """Seconds since the worker started it (to its end once finished)."""
        if self.started_at is None:
            return None
        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()

    @property
    def progress_percent(self) -> int:
        if not self.progress_total:
            return 0
        return round(100 * self.progress_step / self.progress_total)

    def claim(
        self,
        max_attempts: int,
        worker: str | None = None,
        *,
        engine_profile: str | None = None,
        engine_note: str = "",
        timeout: float | None = None,
    ) -> bool:
        """queued -> running, counting an attempt; only one worker can win.

        The claiming worker records what it will really run (``engine_profile``, decided from
        its own models folder) and, with ``timeout``, when its task timeout ends the attempt.
        """
        now = timezone.now()
        changes: dict[str, Any] = {}
        if engine_profile:
            changes.update(engine_profile=engine_profile, engine_note=engine_note)
        return self._transition(
            Q(status=self.Status.QUEUED, attempts__lt=max_attempts, cancel_requested=False),
            status=self.Status.RUNNING,
            attempts=F("attempts") + 1,
            worker=worker or worker_identity(),
            # started_at on this host's clock (recovery compares it with a pid's start time);
            # the heartbeat on the database's, the clock every sweeper compares it with.
            started_at=now,
            heartbeat_at=Now(),
            deadline_at=(
                ExpressionWrapper(Now() + timedelta(seconds=timeout), output_field=models.DateTimeField())
                if timeout
                else None
            ),
            progress_step=0,
            progress_total=self.steps,
            **changes,
        )

    @classmethod
    def claim_order(
        cls, *, loaded: str | None, switch_wait: float, limit: int | None = None, exclude: Any = ()
    ) -> list[int]:
        """The queued runs' ids in the order a GPU worker holding ``loaded`` takes them (issue 18,
        item 6): a run that has waited longer than ``switch_wait`` seconds first (the oldest of
        them), else the oldest run of the model loaded now, else the oldest; each pick becomes the
        loaded model for the next. A ComfyUI run loads nothing here, so it never costs a switch.
        Cloud runs are not in it: the light cluster takes them, first come first served.

        One rule for the claim (``run_generate`` takes the first) and for the queue places the
        dashboard shows, so a place is what happens if nothing else is queued meanwhile. One query.
        """
        cutoff = timezone.now() - timedelta(seconds=switch_wait)
        rows = cls.objects.filter(status=cls.Status.QUEUED, cloud_cost__isnull=True).exclude(pk__in=list(exclude))
        rows = rows.order_by("queued_at", "pk")
        waiting = [
            (pk, engine or model, comfy is not None, queued_at)
            for pk, engine, model, comfy, queued_at in rows.values_list(
                "pk", "engine_profile", "model_profile", "comfy_workflow_id", "queued_at"
            )
        ]
        order: list[int] = []
        current = loaded
        while waiting and (limit is None or len(order) < limit):
            pick = next((row for row in waiting if row[3] <= cutoff), None)
            if pick is None and current:
                pick = next((row for row in waiting if row[1] == current or row[2]), None)
            pick = pick or waiting[0]
            waiting.remove(pick)
            order.append(pick[0])
            if not pick[2]:
                current = pick[1]
        return order

    @classmethod
    def queue_places(cls, *, loaded: str | None, switch_wait: float) -> dict[int, int]:
        """Place in its queue of every queued run (1 = next): the GPU queue in ``claim_order``, the
        cloud runs (the light cluster's) in their own first-come first-served order."""
        places = {pk: place for place, pk in enumerate(cls.claim_order(loaded=loaded, switch_wait=switch_wait), 1)}
        cloud = cls.objects.filter(status=cls.Status.QUEUED, cloud_cost__isnull=False).order_by("queued_at", "pk")
        places.update({pk: place for place, pk in enumerate(cloud.values_list("pk", flat=True), start=1)})
        return places

    def live_attempt(self) -> Q:
        """This attempt still holds the run: it is running and no one claimed it again since.

        The one definition of "this attempt is still live": every write a worker makes about its
        attempt (progress, heartbeat, success, failure) is conditional on it, so an attempt that
        was requeued while it was only slow can never write over the attempt that took over.
        """
        return Q(pk=self.pk, status=self.Status.RUNNING, attempts=self.attempts)

    def wanted_attempt(self) -> Q:
        """This attempt is live and no editor asked to cancel it: the worker should go on."""
        return self.live_attempt() & Q(cancel_requested=False)

    def record_progress(self, step: int, total: int) -> bool:
        """Write (step, total) and the heartbeat; False when the run is no longer running or
        an editor asked to cancel it, which tells the worker to stop."""
        updated = GenerationRun.objects.filter(self.wanted_attempt()).update(
            progress_step=step, progress_total=total, heartbeat_at=Now()
        )
        if updated:
            self.progress_step, self.progress_total = step, total
        return updated == 1

    def record_comfy_prompts(self, prompts: list[dict[str, Any]]) -> bool:
        """Write what this attempt sends to ComfyUI before it sends it; False when the attempt
        is no longer wanted (then nothing is sent)."""
        updated = GenerationRun.objects.filter(self.wanted_attempt()).update(comfy_prompts=prompts, heartbeat_at=Now())
        if updated:
            self.comfy_prompts = prompts
        return updated == 1

    def heartbeat(self) -> bool:
        """Write the heartbeat on the database's clock (a worker's own clock may be off); False
        when the run is no longer running in this attempt."""
        return GenerationRun.objects.filter(self.live_attempt()).update(heartbeat_at=Now()) == 1

    def record_energy(self, joules: float | None, *, watts: float, attempt: int) -> bool:
        """The GPU energy of attempt ``attempt``'s success: ``joules`` read from the card's
        counter, or (None) ``watts`` x the run's recorded GPU seconds, marked as an estimate
        (0 watts: nothing). Never on a cloud run, whose price is its cost. One UPDATE."""
        rows = GenerationRun.objects.filter(
            pk=self.pk, status=self.Status.SUCCEEDED, attempts=attempt, cloud_cost__isnull=True
        )
        if joules is not None:
            return rows.update(energy_joules=joules, energy_estimated=False) == 1
        if watts <= 0:
            return False
        estimate = ExpressionWrapper(F("gpu_seconds") * watts, output_field=models.FloatField())
        return rows.filter(gpu_seconds__isnull=False).update(energy_joules=estimate, energy_estimated=True) == 1

    def succeed(self, load_seconds: float, gpu_seconds: float) -> bool:
        return self._transition(
            self.wanted_attempt(),
            status=self.Status.SUCCEEDED,
            progress_step=F("progress_total"),
            finished_at=timezone.now(),
            load_seconds=load_seconds,
            gpu_seconds=gpu_seconds,
            error="",
        )

    def fail(self, error: str) -> bool:
        return self._transition(self.live_attempt(), status=self.Status.FAILED, finished_at=timezone.now(), error=error)

    def mark_cancelled(self) -> bool:
        """running -> cancelled, by the worker once it has stopped, when an editor asked for it."""
        return self._transition(
            self.live_attempt() & Q(cancel_requested=True), status=self.Status.CANCELLED, finished_at=timezone.now()
        )

    def request_cancel(self) -> bool:
        """An editor's cancel: a queued run ends at once; a running one stops at its next step."""
        if self._transition(
            Q(status=self.Status.QUEUED),
            status=self.Status.CANCELLED,
            cancel_requested=True,
            finished_at=timezone.now(),
        ):
            return True
        return self._transition(Q(status=self.Status.RUNNING), cancel_requested=True)

    def requeue_orphaned(self, max_attempts: int, stale_after: float | None = None) -> bool:
        """running -> queued after its worker died, while attempts remain.

        ``stale_after``: the worker counts as dead because its heartbeat is older than this many
        seconds, so the UPDATE checks that again (on the database's clock): a worker that beat
        since the sweep read the row keeps its run. None: the worker is known dead (its pid).
        """
        allowed = self.wanted_attempt() & Q(attempts__lt=max_attempts)
        if stale_after is not None:
            allowed &= self.stale_heartbeat(stale_after)
        return self._transition(
            allowed, status=self.Status.QUEUED, worker="", heartbeat_at=None, deadline_at=None, progress_step=0
        )

    @staticmethod
    def past_deadline() -> Q:
        """The claiming worker's task timeout has run out (database clock)."""
        return Q(deadline_at__isnull=False, deadline_at__lte=Now())

    @staticmethod
    def stale_heartbeat(seconds: float) -> Q:
        """No heartbeat, or one older than ``seconds`` by the database's clock."""
        return Q(heartbeat_at__isnull=True) | Q(heartbeat_at__lt=Now() - timedelta(seconds=seconds))


def candidate_storage() -> Storage:
    return storages["candidates"]


def candidate_upload_to(instance: Candidate, filename: str) -> str:
    return candidate_file_name(instance.run_id, instance.index, instance.seed, attempt=instance.run.attempts or 1)


def candidate_file_name(run_id: int, index: int, seed: int, attempt: int = 1) -> str:
    """Fixed per run, attempt, index and seed: each attempt writes names of its own, so an
    attempt that lost its run (requeued while it was only slow) can never rewrite the files the
    winning attempt's rows point at, and deletes exactly what it wrote."""
    return f"runs/{run_id:06d}/a{attempt}-{index:02d}-seed{seed}.png"


class Candidate(ConditionalTransitions):
    """One image of a run.

    Review state machine::

        pending --approve--> approved --publish--> published --unpublish--> unpublished
           \\--reject--> rejected          (approved <-> rejected while not published)
    """

    class Review(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        PUBLISHED = "published", "Published"
        UNPUBLISHED = "unpublished", "Unpublished"

    run = models.ForeignKey(GenerationRun, on_delete=models.CASCADE, related_name="candidates")
    index = models.PositiveSmallIntegerField()
    seed = models.PositiveBigIntegerField()
    variation_seed = models.PositiveBigIntegerField(null=True, blank=True)
    image = models.FileField(storage=candidate_storage, upload_to=candidate_upload_to, max_length=255)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    review_status = models.CharField(max_length=12, choices=Review.choices, default=Review.PENDING)
    reviewed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    alt_text = models.TextField(blank=True)
    # The editor's star rating, 0-5 (0: unrated), kept with its review events.
    rating = models.PositiveSmallIntegerField(default=0)
    # An auto-publish preset's approved candidate is published at this time unless an editor
    # stops it (clears it). None: nothing scheduled.
    auto_publish_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Why a scheduled auto-publish did not happen (too small, another publication live), shown
    # on the article page until an editor decides on the candidate.
    auto_publish_note = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run_id", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="unique_candidate_per_run_index")]
        indexes = [models.Index(fields=["run", "review_status"], name="candidate_run_review")]

    def __str__(self) -> str:
        return f"candidate {self.index} of run {self.run_id} (seed {self.seed})"

    def _review(self, allowed: list[str], to: str, by: Any, expected: str | None = None) -> bool:
        """One conditional UPDATE. ``expected`` is the state the deciding editor saw: when
        another editor changed it meanwhile, nothing is written and False comes back."""
        if expected is not None:
            allowed = [expected] if expected in allowed else []
        reviewer = by if to != self.Review.PENDING else None
        return self._transition(
            Q(review_status__in=allowed),
            review_status=to,
            reviewed_by=reviewer,
            reviewed_at=timezone.now() if reviewer is not None else None,
            # Any decision ends a scheduled auto-publish: a rejected or undone candidate never
            # goes public on the policy's clock, and a person's approval publishes when they say.
            auto_publish_at=None,
            auto_publish_note="",
        )

    def approve(self, by: Any, expected: str | None = None) -> bool:
        return self._review([self.Review.PENDING, self.Review.REJECTED], self.Review.APPROVED, by, expected)

    def reject(self, by: Any, expected: str | None = None) -> bool:
        return self._review([self.Review.PENDING, self.Review.APPROVED], self.Review.REJECTED, by, expected)

    def undo(self, by: Any, expected: str | None = None) -> bool:
        """approved/rejected -> pending, while not published."""
        return self._review([self.Review.APPROVED, self.Review.REJECTED], self.Review.PENDING, by, expected)

    def mark_published(self, by: Any) -> bool:
        return self._review([self.Review.APPROVED, self.Review.UNPUBLISHED], self.Review.PUBLISHED, by)

    def unpublish(self, by: Any) -> bool:
        return self._review([self.Review.PUBLISHED], self.Review.UNPUBLISHED, by)

    @property
    def is_decided(self) -> bool:
        return self.review_status in (self.Review.APPROVED, self.Review.REJECTED)


class ReviewEvent(models.Model):
    """One editorial decision on a candidate, written in the transaction that made it."""

    class Action(models.TextChoices):
        APPROVE = "approve", "Approved"
        REJECT = "reject", "Rejected"
        UNDO = "undo", "Undid the decision"
        HERO = "hero", "Made it the hero"
        FILE = "file", "Filed it to an article"
        RATE = "rate", "Rated it"

    candidate = models.ForeignKey(Candidate, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=10, choices=Action.choices)
    from_status = models.CharField(max_length=12, choices=Candidate.Review.choices)
    to_status = models.CharField(max_length=12, choices=Candidate.Review.choices)
    reason = models.TextField(blank=True)
    # For RATE: the rating given (0-5); None for other actions.
    rating = models.PositiveSmallIntegerField(null=True, blank=True)
    # The decisions made in one bulk request share it, so one Undo restores the whole batch.
    batch = models.UUIDField(null=True, blank=True, db_index=True)
    # A decision made by a preset's review policy, not a person ("auto_approve", "auto_publish").
    policy = models.CharField(max_length=20, blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_action_display()} candidate {self.candidate_id}"

    @property
    def actor_label(self) -> str:
        """Who decided, as the history says it: the person, or the preset's review policy."""
        if self.policy:
            return f"the review policy ({self.policy.replace('_', '-')})"
        return str(self.actor) if self.actor_id else "someone"


class CloudSpend(models.Model):
    """What the cloud engine spent in one month, in the price table's currency. A request takes
    its price with one conditional UPDATE (``spent + price <= budget``), so two requests at once
    never pass the budget together."""

    month = models.DateField(unique=True, help_text="The first day of the month.")
    spent = models.DecimalField(max_digits=12, decimal_places=4, default=0)
    images = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-month"]

    def __str__(self) -> str:
        return f"cloud spend {self.month:%Y-%m}: {self.spent}"

    @classmethod
    def take(cls, *, month: Any, amount: Any, images: int, budget: Any) -> bool:
        """Add ``amount`` to ``month``'s spend if it stays within ``budget``: one conditional
        UPDATE, so two requests at once can never both pass it. False: refused, nothing written."""
        cls.objects.get_or_create(month=month)
        return bool(
            cls.objects.filter(month=month, spent__lte=budget - amount).update(
                spent=F("spent") + amount, images=F("images") + images
            )
        )

    @classmethod
    def give_back(cls, *, month: Any, amount: Any, images: int) -> None:
        """Return what a request took for images the cloud never made (it failed first)."""
        cls.objects.filter(month=month).update(spent=F("spent") - amount, images=F("images") - images)


class RunPreview(models.Model):
    """The latest live preview of one candidate of a running run: a small image decoded cheaply
    from the current latents. Written by the worker every few steps, read by the run card and
    the AUTOMATIC1111 ``progress`` endpoint, deleted when the run ends (previews are not kept)."""

    run = models.ForeignKey(GenerationRun, on_delete=models.CASCADE, related_name="previews")
    index = models.PositiveSmallIntegerField()
    step = models.PositiveIntegerField()
    image = models.BinaryField(help_text="JPEG bytes, a few kB.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run_id", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="one_preview_per_candidate")]

    def __str__(self) -> str:
        return f"preview {self.index} of run {self.run_id} at step {self.step}"


class WorkerHeartbeat(models.Model):
    """A worker process's last sign of life, written by a thread every heartbeat interval, so
    ``/healthz`` and the dashboard can say whether a GPU worker is there even when it is idle."""

    worker = models.CharField(max_length=200, unique=True, help_text="host:pid")
    cluster = models.CharField(max_length=40, db_index=True)
    started_at = models.DateTimeField(default=timezone.now)
    seen_at = models.DateTimeField(db_index=True)
    # What a GPU worker can run, decided from its own models folder and HOFFDESK_DEMO: profile
    # asked for -> profile that runs (itself when its weights are there, else its tiny stand-in).
    # A profile it cannot run is not listed. The web reads it to say what a run will use.
    profiles = models.JSONField(default=dict, blank=True)
    # The upscaler models in its models folder (file stems), for hires passes.
    upscalers = models.JSONField(default=list, blank=True)
    # The profile whose pipeline it holds loaded now ("" none), and the one it is loading
    # with when it started, so the banner can say "loading FLUX.1-dev (40 s)".
    loaded_profile = models.CharField(max_length=40, blank=True)
    loading_profile = models.CharField(max_length=40, blank=True)
    loading_since = models.DateTimeField(null=True, blank=True)

    # A worker not seen for this long counts as gone (the dashboard's banner, the web's guess).
    SILENT_AFTER = timedelta(seconds=60)

    class Meta:
        ordering = ["-seen_at"]

    def __str__(self) -> str:
        return f"{self.worker} ({self.cluster})"

    @classmethod
    def live(cls, cluster: str) -> models.QuerySet[WorkerHeartbeat]:
        """The workers of ``cluster`` seen within ``SILENT_AFTER`` (database clock)."""
        return cls.objects.filter(cluster=cluster, seen_at__gte=Now() - cls.SILENT_AFTER)
