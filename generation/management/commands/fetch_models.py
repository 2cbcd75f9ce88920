from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.profiles import UPSCALERS_FOLDER, UnknownProfile, all_profiles, get_profile
from hoffdesk_images.env import envstr

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


@dataclass(frozen=True)
class UpscalerDownload:
    """An upscaler model we know where to fetch: a release asset under a base URL, checked
    against the sha256 others have published for it so a changed or damaged file is refused."""

    name: str
    release_path: str  # under the base URL
    sha256: str
    size: int  # bytes, for the operator's information; the hash is what is checked
    licence: str

    @property
    def filename(self) -> str:
        return self.release_path.rsplit("/", 1)[-1]


# Real-ESRGAN's official release downloads. A mirror that keeps the same paths may stand in
# (HOFFDESK_UPSCALER_BASE_URL); the file must still hash to the published sha256.
UPSCALER_BASE_URL = "https://github.com/xinntao/Real-ESRGAN/releases/download"
UPSCALERS = {
    "RealESRGAN_x4plus": UpscalerDownload(
        name="RealESRGAN_x4plus",
        release_path="v0.1.0/RealESRGAN_x4plus.pth",
        sha256="4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
        size=67_040_989,
        licence="BSD-3-Clause",
    ),
}
CHUNK = 1 << 20
TIMEOUT_S = 30


class Command(BaseCommand):
    help = (
        "Download real model weights from the Hugging Face hub into HOFFDESK_MODELS_DIR/<profile> "
        "(tiny profiles are built locally instead). Gated models such as FLUX.1-dev need HF_TOKEN. "
        "An upscaler name (RealESRGAN_x4plus, BSD-3-Clause) downloads its official release file into "
        "HOFFDESK_MODELS_DIR/upscalers/, checked against its published sha256."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "profiles",
            nargs="+",
            metavar="NAME",
            help=f"a model profile ({', '.join(all_profiles())}) or an upscaler ({', '.join(UPSCALERS)})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        names = list(options["profiles"])
        upscalers = [UPSCALERS[name] for name in names if name in UPSCALERS]
        try:
            profiles = [get_profile(name) for name in names if name not in UPSCALERS]
        except UnknownProfile as exc:
            raise CommandError(f"{exc.args[0]}; or an upscaler: {', '.join(UPSCALERS)}") from None
        failures = []
        for upscaler in upscalers:
            try:
                self._fetch_upscaler(upscaler)
            except CommandError as exc:
                self.stderr.write(f"{upscaler.name}: {exc}")
                failures.append(upscaler.name)
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

    def _fetch_upscaler(self, upscaler: UpscalerDownload) -> None:
        """Stream the release file into a hidden temporary name beside its place (never listed as
        an upscaler), hashing it on the way, and move it into place only when it is complete and
        its sha256 matches: an interrupted or altered download leaves nothing a worker would load."""
        folder = Path(settings.HOFFDESK_MODELS_DIR) / UPSCALERS_FOLDER
        target = folder / upscaler.filename
        if target.exists():
            self.stdout.write(f"{upscaler.name}: already at {target}; not fetched again (delete it to fetch anew)")
            return
        base_url = envstr("HOFFDESK_UPSCALER_BASE_URL", UPSCALER_BASE_URL).rstrip("/")
        url = f"{base_url}/{upscaler.release_path}"
        self.stdout.write(f"{upscaler.name} ({upscaler.licence}): downloading {url} into {target}")
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{upscaler.filename}.", suffix=".part", dir=folder)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as fh:
                digest, written = self._stream(url, upscaler.filename, fh)
            if digest != upscaler.sha256:
                raise CommandError(
                    f"the file from {url} has sha256 {digest} ({written} bytes), not the published "
                    f"{upscaler.sha256} ({upscaler.size} bytes); it was not kept"
                )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        self.stdout.write(self.style.SUCCESS(f"{upscaler.name}: ready at {target}"))

    def _stream(self, url: str, filename: str, fh: Any) -> tuple[str, int]:
        """Copy ``url`` into ``fh`` with a progress bar (plain tqdm, the bar the profile downloads
        show: huggingface_hub's wrapper is switched off process-wide once anything disables hub
        progress bars); the sha256 and length of what arrived, or ``CommandError`` saying why."""
        from tqdm import tqdm

        digest = hashlib.sha256()
        written = 0
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                # The raw stream: Django's OutputWrapper would end every \r update with a newline.
                with tqdm(
                    total=total, unit="B", unit_scale=True, desc=filename, file=self.stderr._out, disable=False
                ) as bar:
                    while chunk := response.read(CHUNK):
                        fh.write(chunk)
                        digest.update(chunk)
                        written += len(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as exc:
            raise CommandError(f"download failed: {url} answered HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise CommandError(
                f"{url} is not reachable from this machine (offline, or the host is blocked: {exc.reason}). "
                "Download the file on a machine that can reach it and copy it into "
                f"{Path(settings.HOFFDESK_MODELS_DIR) / UPSCALERS_FOLDER}, or set HOFFDESK_UPSCALER_BASE_URL "
                "to a mirror with the same paths."
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise CommandError(f"download of {url} failed after {written} bytes: {type(exc).__name__}: {exc}") from None
        if total is not None and written != total:
            raise CommandError(f"download of {url} stopped at {written} of {total} bytes")
        return digest.hexdigest(), written
