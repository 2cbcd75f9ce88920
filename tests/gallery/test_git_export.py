"""``manage.py export_published --git DIR``: every published article's renditions in a git
repository, images tracked by Git LFS, one commit per article changed, nothing on a second run.
Real ``git`` and ``git-lfs`` (Debian packages that scripts/test.sh installs) on a local repository."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from gallery.models import Article
from tests.gallery.test_publishing import approved_candidate, big_png, publish_now

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        shutil.which("git-lfs") is None, reason="git-lfs is not installed (scripts/test.sh installs it)"
    ),
]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def export(repo: Path) -> str:
    out = io.StringIO()
    call_command("export_published", "--git", str(repo), stdout=out)
    return out.getvalue()


def test_published_renditions_land_in_lfs_one_commit_per_article_and_a_rerun_commits_nothing(
    tmp_path, editor, article
) -> None:
    other = Article.objects.create(slug="sqlite-wal", title="SQLite WAL in anger", content_type="technical")
    publish_now(approved_candidate(article, editor, seed=1), editor)
    publication = publish_now(approved_candidate(other, editor, seed=2), editor)
    repo = tmp_path / "assets"

    report = export(repo)
    subjects = git(repo, "log", "--format=%s").splitlines()
    assert len([s for s in subjects if s.startswith("Publish ")]) == 2, subjects
    assert any("flux-on-a-3080" in s for s in subjects) and any("sqlite-wal" in s for s in subjects)
    assert "2 articles changed" in report
    assert "filter=lfs" in (repo / ".gitattributes").read_text()

    lfs = set(git(repo, "lfs", "ls-files", "--name-only").split())
    images = {
        str(p.relative_to(repo))
        for p in repo.rglob("*")
        if p.suffix in {".webp", ".jpg", ".avif"} and ".git" not in p.parts
    }
    assert images and lfs == images
    assert {f"sqlite-wal/{name}" for name in publication.urls} <= images  # hero.webp, card.jpg, ...
    assert "sqlite-wal/card.jpg" in lfs
    assert git(repo, "status", "--porcelain") == ""

    head = git(repo, "rev-parse", "HEAD")
    assert "nothing changed" in export(repo)
    assert git(repo, "rev-parse", "HEAD") == head

    publish_now(approved_candidate(other, editor, seed=3, png=big_png(seed=50)), editor)
    export(repo)
    new = git(repo, "log", "--format=%s", f"{head.strip()}..HEAD").splitlines()
    assert len(new) == 1 and "sqlite-wal" in new[0]
    changed = git(repo, "show", "--name-only", "--format=", "HEAD").split()
    assert changed and all(path.startswith("sqlite-wal/") for path in changed)


def test_an_unpublished_article_is_removed_in_its_own_commit(tmp_path, editor, article) -> None:
    from gallery.publishing import publication_unpublish

    publication = publish_now(approved_candidate(article, editor), editor)
    repo = tmp_path / "assets"
    export(repo)
    publication_unpublish(publication=publication, by=editor)
    export(repo)
    assert not (repo / article.slug).exists()
    assert git(repo, "log", "-1", "--format=%s").startswith(f"Remove {article.slug}")


def test_a_folder_that_is_another_repositorys_file_is_refused(tmp_path) -> None:
    target = tmp_path / "file"
    target.write_text("not a folder")
    with pytest.raises(CommandError, match="not a folder"):
        export(target)
