"""Git LFS as a publishing target: every published article's renditions in a git repository.

For owners who version their assets with their content. Each article gets a folder named by its
slug holding its renditions under stable names (``hero.webp``, ``card.jpg``...; the publish
storage's keys carry a content hash, which a git history does not need) and ``hoffdesk.json`` (the
title, the alt text, the public URLs). Images are tracked by Git LFS (``.gitattributes``), so the
repository itself stays small.

Each article that changed is one commit, and an article that is no longer published has its folder
removed in one commit; what git sees as unchanged is not committed, so a second export of the same
publications commits nothing. Only the folders this export wrote (those with ``hoffdesk.json``)
are ever removed. The files come from the publish storage, so this works with R2 as well.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from django.core.files.storage import Storage

from gallery.models import Publication
from gallery.publishing import publish_storage

MARKER: Final = "hoffdesk.json"
LFS_PATTERNS: Final = ("*.webp", "*.jpg", "*.jpeg", "*.avif", "*.png")
GITATTRIBUTES: Final = "# Images exported by HoffDesk Images (manage.py export_published) live in Git LFS.\n" + "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS
)
COMMITTER: Final = {"GIT_AUTHOR_NAME": "HoffDesk Images", "GIT_AUTHOR_EMAIL": "images@hoffdesk.invalid"}


class GitExportError(Exception):
    """Git or Git LFS is missing, or the target is not usable; the message says what to do."""


@dataclass
class ExportReport:
    """What one export did: the articles committed (slug -> commit subject) and those unchanged."""

    committed: dict[str, str] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    configured = subprocess.run(
        ["git", "-C", str(repo), "config", "user.email"], capture_output=True, text=True, env=env
    ).stdout.strip()
    if not configured:  # the repository's own identity wins; ours only when it has none
        env.update(COMMITTER)
        env.update(GIT_COMMITTER_NAME=COMMITTER["GIT_AUTHOR_NAME"], GIT_COMMITTER_EMAIL=COMMITTER["GIT_AUTHOR_EMAIL"])
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise GitExportError(f"git {' '.join(args)} failed: {(result.stderr or result.stdout).strip()}")
    return result


def _prepare(repo: Path) -> None:
    """An existing repository, or a new one; Git LFS's filters in it; ``.gitattributes`` committed."""
    if shutil.which("git") is None:
        raise GitExportError("git is not installed (Debian: apt-get install git).")
    if subprocess.run(["git", "lfs", "version"], capture_output=True).returncode != 0:
        raise GitExportError("Git LFS is not installed (Debian: apt-get install git-lfs).")
    if repo.exists() and not repo.is_dir():
        raise GitExportError(f"{repo} is not a folder.")
    repo.mkdir(parents=True, exist_ok=True)
    if _git(repo, "rev-parse", "--show-toplevel", check=False).returncode != 0:
        _git(repo, "init", "-q")
    _git(repo, "lfs", "install", "--local")
    attributes = repo / ".gitattributes"
    current = attributes.read_text() if attributes.exists() else ""
    missing = [
        line for line in GITATTRIBUTES.splitlines(keepends=True) if line not in current.splitlines(keepends=True)
    ]
    if missing:
        attributes.write_text(current + ("" if not current or current.endswith("\n") else "\n") + "".join(missing))
        _commit(repo, ".gitattributes", "Track exported images with Git LFS")


def _commit(repo: Path, path: str, subject: str) -> bool:
    """Stage everything under ``path`` and commit it alone; False when git sees no change."""
    _git(repo, "add", "--all", "--", path)
    if _git(repo, "diff", "--cached", "--quiet", "--", path, check=False).returncode == 0:
        return False
    _git(repo, "commit", "-q", "-m", subject, "--", path)
    return True


def _write_article(folder: Path, publication: Publication, storage: Storage) -> None:
    """The article's folder exactly as the publication has it: stale files go."""
    wanted: dict[str, bytes] = {}
    for row in publication.renditions:
        extension = row["key"].rsplit(".", 1)[-1]
        with storage.open(row["key"], "rb") as fh:
            wanted[f"{row['name']}.{extension}"] = fh.read()
    article = publication.article
    facts = {
        "slug": article.slug,
        "title": article.title,
        "alt_text": publication.alt_text,
        "candidate": publication.candidate_id,
        "urls": publication.urls,
    }
    wanted[MARKER] = (json.dumps(facts, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        if stale.name not in wanted:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    for name, data in wanted.items():
        target = folder / name
        if not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)


def export_published(*, repo: Path, storage: Storage | None = None) -> ExportReport:
    """Export every published article into ``repo`` (made if missing); see the module docstring."""
    storage = storage or publish_storage()
    _prepare(repo)
    report = ExportReport()
    live = (
        Publication.objects.filter(status=Publication.Status.PUBLISHED)
        .select_related("article")
        .order_by("article__slug")
    )
    slugs = set()
    for publication in live:
        slug = publication.article.slug
        slugs.add(slug)
        _write_article(repo / slug, publication, storage)
        subject = f"Publish {slug}: {publication.article.title} (candidate {publication.candidate_id})"
        if _commit(repo, slug, subject):
            report.committed[slug] = subject
        else:
            report.unchanged.append(slug)
    for marker in sorted(repo.glob(f"*/{MARKER}")):
        folder = marker.parent
        if folder.name not in slugs:
            shutil.rmtree(folder)
            subject = f"Remove {folder.name}: no longer published"
            if _commit(repo, folder.name, subject):
                report.committed[folder.name] = subject
    return report
