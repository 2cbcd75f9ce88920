from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.profiles import UnknownProfile, all_profiles, get_profile

# Only the diffusers folders: FLUX repos also hold single-file checkpoints (23 GB) we never load.
DIFFUSERS_PATTERNS = [
    "model_index.json",
    "scheduler/*",
    "text_encoder/*",
    "text_encoder_2/*",
    "text_encoder_3/*",
    "tokenizer/*",
    "tokenizer_2/*",
    "tokenizer_3/*",
    "transformer/*",
    "unet/*",
    "vae/*",
]


class Command(BaseCommand):
    help = (
        "Download real model weights from the Hugging Face hub into HOFFDESK_MODELS_DIR/<profile> "
        "(tiny profiles are built locally instead). Gated models such as FLUX.1-dev need HF_TOKEN."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("profiles", nargs="+", metavar="PROFILE", help=", ".join(all_profiles()))

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            profiles = [get_profile(name) for name in options["profiles"]]
        except UnknownProfile as exc:
            raise CommandError(str(exc.args[0])) from None
        failures = []
        for profile in profiles:
            target = settings.HOFFDESK_MODELS_DIR / profile.name
            if profile.tiny:
                from generation.engine.tiny import ensure_tiny

                ensure_tiny(profile.name, target)
                self.stdout.write(f"{profile.name}: built locally at {target} (random weights)")
                continue
            self.stdout.write(f"{profile.name}: downloading {profile.hub_id} into {target}")
            try:
                self._download(profile.hub_id or "", str(target))
            except CommandError as exc:
                self.stderr.write(f"{profile.name}: {exc}")
                failures.append(profile.name)
                continue
            self.stdout.write(self.style.SUCCESS(f"{profile.name}: ready at {target}"))
        if failures:
            raise CommandError(f"not fetched: {', '.join(failures)}")

    def _download(self, repo_id: str, target: str) -> None:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

        try:
            snapshot_download(repo_id, local_dir=target, allow_patterns=DIFFUSERS_PATTERNS)
        except GatedRepoError:
            raise CommandError(
                f"{repo_id} is gated: accept its licence on huggingface.co, then set HF_TOKEN and try again"
            ) from None
        except RepositoryNotFoundError:
            raise CommandError(f"{repo_id} was not found on the hub (or needs HF_TOKEN)") from None
        except LocalEntryNotFoundError as exc:
            raise CommandError(
                "the Hugging Face hub is not reachable from this machine (offline, or huggingface.co "
                "is blocked). Run fetch_models on a machine that can reach it and copy the folder, "
                f"or set HF_ENDPOINT to a mirror. ({exc})"
            ) from None
        except OSError as exc:
            raise CommandError(f"download failed: {exc}") from None
