"""Who may reach what: every URL the project defines is walked from the resolver, so a new URL
that forgets its login or its group check fails here."""

from __future__ import annotations

import io

import pytest
from django.core.files.base import ContentFile
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from PIL import Image

from gallery.models import Article, Publication
from generation.models import Candidate, GenerationRun, candidate_storage
from generation.previews import previews_write
from tests.gallery.test_review import make_run

pytestmark = pytest.mark.django_db

# Every name in the gallery namespace is in exactly one of these.
PAGES = {"article_list", "article_detail", "candidate_detail", "compare", "inbox", "inbox_compare"}
FRAGMENTS_AND_FILES = {"run_card", "article_history", "candidate_image", "candidate_thumbnail", "publication_card"}
ACTIONS = {
    "run_create",
    "article_wand",
    "series_look",
    "run_cancel",
    "run_regenerate",
    "candidate_review",
    "candidate_hero",
    "candidate_regenerate",
    "candidate_file",
    "candidate_publish",
    "publication_retry",
    "publication_unpublish",
    "publication_purge",
    # bulk decisions and articles from the dashboard (gallery/views_bulk.py, gallery/views_articles.py)
    "candidates_bulk",
    "batch_undo",
    "article_new",
    "article_edit",
    "articles_import",
}
FRAGMENTS_AND_FILES |= {"article_counts", "article_list_counts"}  # the live counts' polls
FRAGMENTS_AND_FILES |= {"run_preview"}  # a running run's live preview JPEG (issue 18)
ACTIONS |= {"candidate_stop_auto_publish"}  # Stop on an auto-publish (issue 20, review policies)
ACTIONS |= {"article_cloud"}  # Make in the cloud (issue 20, cloud fallback)
ACTIONS |= {"costs", "costs_csv"}  # the Costs page and its CSV change nothing, but are for editors (issue 20)
ACTIONS |= {"candidate_rate"}  # 0-5 stars from the keys (issue 19, gallery/views_culling.py)


def gallery_patterns() -> dict[str, URLPattern]:
    patterns: dict[str, URLPattern] = {}

    def walk(entries, namespace: str | None) -> None:  # type: ignore[no-untyped-def]
        for entry in entries:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, entry.namespace or namespace)
            elif namespace == "gallery":
                patterns[entry.name] = entry

    walk(get_resolver().url_patterns, None)
    return patterns


@pytest.fixture
def candidate(article) -> Candidate:
    run = GenerationRun.objects.create(
        article=article, model_profile="tiny-sd", prompt="p", width=64, height=64, steps=2, guidance=1.0,
        base_seed=7, count=1, status=GenerationRun.Status.SUCCEEDED,
    )  # fmt: skip
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "indigo").save(buffer, format="PNG")
    name = candidate_storage().save(f"runs/{run.pk:06d}/00-seed7.png", ContentFile(buffer.getvalue()))
    import hashlib

    candidate = Candidate.objects.create(
        run=run, index=0, seed=7, image=name, width=64, height=64, sha256=hashlib.sha256(buffer.getvalue()).hexdigest()
    )
    Publication.objects.create(article=article, candidate=candidate, alt_text="A test", status="failed")
    return candidate


def url_for(name: str, article: Article, candidate: Candidate) -> str:
    pattern = gallery_patterns()[name]
    samples = {"slug": article.slug, "pk": candidate.pk, "version": candidate.sha256[:16], "width": 256}
    samples["batch"] = "6f1c2d3e-0000-4000-8000-000000000001"  # a bulk batch's UUID
    samples["index"] = 0  # a candidate index (a live preview)
    kwargs = {key: samples[key] for key in pattern.pattern.regex.groupindex}
    if name.startswith("run_") and "pk" in kwargs:
        kwargs["pk"] = candidate.run_id
    if name.startswith("publication_"):
        kwargs["pk"] = Publication.objects.get(candidate=candidate).pk
    return reverse(f"gallery:{name}", kwargs=kwargs)


# Outside the dashboard: public on purpose (logging in, the operator's probe, the published files
# that stand in for the CDN), or Django's admin with its own login.
PUBLIC = {"login", "logout", "healthz", None}  # None: the unnamed /published/<path> route


def test_every_url_is_classified_so_none_can_forget_its_access_check() -> None:
    names = set(gallery_patterns())
    assert names == PAGES | FRAGMENTS_AND_FILES | ACTIONS
    assert not (PAGES & FRAGMENTS_AND_FILES or PAGES & ACTIONS or FRAGMENTS_AND_FILES & ACTIONS)
    outside = set()
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            # A new app must be added above. The JSON API has bearer tokens of its own: tests/api
            # walks its routes without one.
            assert entry.namespace in ("gallery", "admin", "api"), entry
        else:
            outside.add(entry.name)
    assert outside <= PUBLIC, outside - PUBLIC


def test_the_admin_sends_anonymous_visitors_to_its_login(client) -> None:
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("name", sorted(PAGES | ACTIONS))
@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_visitors_are_sent_to_the_login_page(client, article, candidate, name, method) -> None:
    url = url_for(name, article, candidate)
    response = getattr(client, method)(url)
    assert response.status_code == 302, (url, response.status_code)
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("name", sorted(FRAGMENTS_AND_FILES))
@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_fragments_and_files_answer_401_not_a_login_page(client, article, candidate, name, method) -> None:
    url = url_for(name, article, candidate)
    response = getattr(client, method)(url)
    assert response.status_code == 401, (url, response.status_code)
    assert b"<form" not in response.content


@pytest.mark.parametrize("name", sorted(ACTIONS))
@pytest.mark.parametrize("method", ["get", "post"])
def test_a_user_in_no_group_gets_a_friendly_403_on_every_action(
    client, onlooker, article, candidate, name, method
) -> None:
    client.force_login(onlooker)
    url = url_for(name, article, candidate)
    response = getattr(client, method)(url, {"action": "approve", "mode": "more"} if method == "post" else None)
    assert response.status_code in (403, 405), (url, response.status_code)
    if response.status_code == 403:
        assert b"Not allowed" in response.content and b"Traceback" not in response.content
    candidate.refresh_from_db()
    assert candidate.review_status == Candidate.Review.PENDING
    assert GenerationRun.objects.count() == 1 and not candidate.events.exists()
    assert list(Publication.objects.values_list("status", flat=True)) == ["failed"]


def test_every_action_is_refused_to_an_onlooker_with_403_for_its_own_method(
    client, onlooker, article, candidate
) -> None:
    client.force_login(onlooker)
    for name in ACTIONS:
        response = client.post(url_for(name, article, candidate), {"action": "approve"})
        assert response.status_code == 403, name


@pytest.mark.parametrize("name", sorted(PAGES | FRAGMENTS_AND_FILES))
def test_a_user_in_no_group_can_still_look(client, onlooker, article, candidate, name) -> None:
    client.force_login(onlooker)
    url = url_for(name, article, candidate)
    compared: list[Candidate] = []
    if name in ("compare", "inbox_compare"):
        # Two real candidates of the page's own kind: the article's, or two in the Inbox (no article).
        owner = article if name == "compare" else None
        compared = list(make_run(owner, count=2).candidates.order_by("index"))  # type: ignore[arg-type]
        url += "?" + "&".join(f"c={c.pk}" for c in compared)
    if name == "run_preview":  # a live preview exists only while its run is running
        running = make_run(article, count=1)
        GenerationRun.objects.filter(pk=running.pk).update(status=GenerationRun.Status.RUNNING)
        jpeg = io.BytesIO()
        Image.new("RGB", (8, 8), "indigo").save(jpeg, format="JPEG")
        previews_write(run_id=running.pk, images=[jpeg.getvalue()], step=1)
        url = reverse("gallery:run_preview", kwargs={"pk": running.pk, "index": 0})
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    for shown in compared:
        assert reverse("gallery:candidate_detail", args=[shown.pk]).encode() in response.content


def test_an_onlooker_sees_no_action_buttons(client, onlooker, article, candidate) -> None:
    client.force_login(onlooker)
    body = client.get(article.get_absolute_url()).content.decode()
    assert ">Approve</button>" not in body and "Generate candidates" not in body
    assert "can look but not act" in body


def test_an_editor_sees_the_action_buttons(editor_client, article, candidate) -> None:
    body = editor_client.get(article.get_absolute_url()).content.decode()
    assert ">Approve</button>" in body and "Generate candidates" in body
