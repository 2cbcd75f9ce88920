from __future__ import annotations

from django.apps import AppConfig


class GenerationConfig(AppConfig):
    name = "generation"
    verbose_name = "Generation"

    def ready(self) -> None:
        # Connects the worker-start hook (crash recovery) to django-q2's post_spawn signal.
        from generation import signals  # noqa: F401
