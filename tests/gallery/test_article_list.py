"""The article list (search, filters, sorts, pages, counts, thumbnails) and the query budget of
the list and the article page: the same number of SQL queries whatever the amount of data."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from gallery.models import Article, Publication
from gallery.templatetags.gallery_tags import thumb_url
from generation.models import Candidate, GenerationRun, ReviewEvent, StylePreset
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

PENDING, APPROVED, REJECTED = Candidate.Review.PENDING, Candidate.Review.APPROVED, Candidate.Review.REJECTED
PUBLISHED, UNPUBLISHED = Candidate.Review.PUBLISHED, Candidate.Review.UNPUBLISHED
THUMB_PK = re.compile(r"/candidates/(\d+)/thumb/[0-9a-f]+-\d+\.webp")


def add_run(
    article: Article,
    statuses: Sequence[str],
    *,
    seed: int = 1,
    created_at=None,  # type: ignore[no-untyped-def]
    reviewer=None,  # type: ignore[no-untyped-def]
    status: str = GenerationRun.Status.SUCCEEDED,
    **run_fields,  # type: ignore[no-untyped-def]
) -> list[Candidate]:
    """A run of ``article`` with one candidate (database rows only, no files) per review status."""
    run = GenerationRun.objects.create(
        article=article, model_profile="tiny-sd", prompt=f"a lighthouse {seed}", width=64, height=64, steps=2,
        guidance=1.0, base_seed=seed, count=max(1, len(statuses)), status=status, **run_fields,
    )  # fmt: skip
    created_at = created_at or timezone.now()
    return Candidate.objects.bulk_create(
        Candidate(
            run=run,
            index=index,
            seed=seed + index,
            image=f"runs/{run.pk:06d}/{index:02d}-seed{seed + index}.png",
            width=64,
            height=64,
            sha256=hashlib.sha256(f"run {run.pk} candidate {index}".encode()).hexdigest(),
            review_status=review_status,
            reviewed_by=reviewer if review_status != PENDING else None,
            reviewed_at=created_at if review_status != PENDING and reviewer else None,
            created_at=created_at + timedelta(seconds=index),
        )
        for index, review_status in enumerate(statuses)
    )


def make_article(title: str, slug: str | None = None, updated_ago: timedelta | None = None) -> Article:
    article = Article.objects.create(slug=slug or re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-"), title=title)
    if updated_ago is not None:
        Article.objects.filter(pk=article.pk).update(updated_at=timezone.now() - updated_ago)
    return article


def set_hero(article: Article, candidate: Candidate) -> None:
    Article.objects.filter(pk=article.pk).update(hero_candidate=candidate)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.hrefs: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs += [value or "" for name, value in attrs if name == "href"]


def parse(html: str) -> _Text:
    parser = _Text()
    parser.feed(html)
    return parser


def page_text(html: str) -> str:
    return " ".join(" ".join(parse(html).parts).split())


def list_page(client, **params: str) -> str:  # type: ignore[no-untyped-def]
    response = client.get(reverse("gallery:article_list"), params)
    assert response.status_code == 200
    return response.content.decode()


def titles_in_order(html: str, titles: list[str]) -> list[str]:
    """The given titles that the page shows, in the order it shows them."""
    shown = [title for title in titles if title in html]
    return sorted(shown, key=html.index)


def row_segments(html: str, articles: list[Article]) -> dict[str, str]:
    """Each shown article's part of the page: from its first link to the next article's first link."""
    starts = sorted(
        (html.index(f'href="{a.get_absolute_url()}"'), a.slug)
        for a in articles
        if f'href="{a.get_absolute_url()}"' in html
    )
    ends = [start for start, _ in starts[1:]] + [len(html)]
    return {slug: html[start:end] for (start, slug), end in zip(starts, ends, strict=True)}


# Search -------------------------------------------------------------------------------------


def test_search_matches_title_or_slug_ignoring_case(editor_client) -> None:
    make_article("Running FLUX on a 3080 Ti", slug="gpu-budget")
    make_article("Quantization notes", slug="nf4-flux-notes")
    make_article("Warm pipelines", slug="keeping-models-hot")

    flux = list_page(editor_client, q="flux")
    assert set(titles_in_order(flux, ["Running FLUX on a 3080 Ti", "Quantization notes", "Warm pipelines"])) == {
        "Running FLUX on a 3080 Ti",
        "Quantization notes",
    }
    assert "Warm pipelines" not in flux

    by_slug = list_page(editor_client, q="HOT")
    assert "Warm pipelines" in by_slug
    assert "Running FLUX on a 3080 Ti" not in by_slug and "Quantization notes" not in by_slug

    by_title = list_page(editor_client, q="PIPELINES")
    assert "Warm pipelines" in by_title and "Quantization notes" not in by_title
    assert "1 article" in page_text(by_title)


def test_a_search_that_matches_nothing_says_so(editor_client) -> None:
    make_article("Running FLUX on a 3080 Ti")
    html = list_page(editor_client, q="zeppelin")
    text = page_text(html)
    assert "0 articles" in text and "No article matches" in text
    assert "Running FLUX on a 3080 Ti" not in html


# Filters ------------------------------------------------------------------------------------

FILTER_TITLES = [
    "Quiet article",
    "Pending only",
    "Approved hero",
    "Published once",
    "Mixed bag",
    "Rejected only",
]


@pytest.fixture
def filter_articles(editor) -> dict[str, Article]:  # type: ignore[no-untyped-def]
    articles = {title: make_article(title) for title in FILTER_TITLES}
    add_run(articles["Pending only"], [PENDING, PENDING], seed=10)
    hero, _ = add_run(articles["Approved hero"], [APPROVED, REJECTED], seed=20, reviewer=editor)
    set_hero(articles["Approved hero"], hero)
    published, _ = add_run(articles["Published once"], [PUBLISHED, REJECTED], seed=30, reviewer=editor)
    add_run(articles["Mixed bag"], [PENDING], seed=40)
    add_run(articles["Mixed bag"], [APPROVED, UNPUBLISHED], seed=50, reviewer=editor)
    _, unpublished = add_run(articles["Rejected only"], [REJECTED, UNPUBLISHED], seed=60, reviewer=editor)
    # "Published" reads the Publication records: a live one counts, an unpublished one does not.
    Publication.objects.create(
        article=articles["Published once"], candidate=published, alt_text="a", status="published"
    )
    Publication.objects.create(
        article=articles["Rejected only"], candidate=unpublished, alt_text="b", status="unpublished"
    )
    return articles


@pytest.mark.parametrize(
    ("filter_key", "expected"),
    [
        ("needs-hero", {"Quiet article", "Pending only", "Published once", "Mixed bag", "Rejected only"}),
        ("waiting", {"Pending only", "Mixed bag"}),
        ("approved", {"Approved hero", "Mixed bag"}),
        ("published", {"Published once"}),
        ("", set(FILTER_TITLES)),
    ],
)
def test_each_filter_selects_exactly_the_right_articles(editor_client, filter_articles, filter_key, expected) -> None:
    html = list_page(editor_client, filter=filter_key)
    assert set(titles_in_order(html, FILTER_TITLES)) == expected
    count = len(expected)
    assert f"{count} article{'s' if count != 1 else ''}" in page_text(html)


# Sorts --------------------------------------------------------------------------------------


@pytest.fixture
def sort_articles() -> list[Article]:
    """Updated order: Delta, Bravo, Charlie, Alpha. Waiting: Charlie 3, Delta 1, Alpha 1, Bravo 0."""
    alpha = make_article("Alpha article")
    bravo = make_article("Bravo article")
    charlie = make_article("Charlie article")
    delta = make_article("Delta article")
    add_run(alpha, [PENDING, REJECTED], seed=1)
    add_run(charlie, [PENDING, PENDING, PENDING], seed=2)
    add_run(delta, [PENDING], seed=3)
    add_run(bravo, [REJECTED], seed=4)
    for article, hours in ((alpha, 40), (bravo, 2), (charlie, 30), (delta, 1)):
        Article.objects.filter(pk=article.pk).update(updated_at=timezone.now() - timedelta(hours=hours))
    return [alpha, bravo, charlie, delta]


SORT_TITLES = ["Alpha article", "Bravo article", "Charlie article", "Delta article"]


@pytest.mark.parametrize(
    ("sort_key", "expected"),
    [
        ("updated", ["Delta article", "Bravo article", "Charlie article", "Alpha article"]),
        ("", ["Delta article", "Bravo article", "Charlie article", "Alpha article"]),
        ("title", ["Alpha article", "Bravo article", "Charlie article", "Delta article"]),
        # Most waiting first; a tie (Alpha and Delta, 1 each) goes to the more recently updated.
        ("waiting", ["Charlie article", "Delta article", "Alpha article", "Bravo article"]),
        ("nonsense", ["Delta article", "Bravo article", "Charlie article", "Alpha article"]),
    ],
)
def test_sorts_order_the_rows(editor_client, sort_articles, sort_key, expected) -> None:
    html = list_page(editor_client, sort=sort_key)
    assert titles_in_order(html, SORT_TITLES) == expected


# Pages --------------------------------------------------------------------------------------


def test_thirty_articles_make_two_pages_and_page_links_keep_search_filter_and_sort(editor_client) -> None:
    titles = [f"Paged article {n:02d}" for n in range(1, 31)]
    for title in reversed(titles):
        make_article(title)
    make_article("Unrelated story")  # not matched by the search
    params = {"q": "PAGED", "filter": "needs-hero", "sort": "title"}

    first = list_page(editor_client, **params)
    assert titles_in_order(first, titles) == titles[:25]
    assert "Unrelated story" not in first
    next_links = [h for h in parse(first).hrefs if parse_qs(urlsplit(h).query).get("page")]
    assert next_links, "page 1 has no link to page 2"
    query = parse_qs(urlsplit(next_links[0]).query)
    assert query == {"q": ["PAGED"], "filter": ["needs-hero"], "sort": ["title"], "page": ["2"]}

    second_response = editor_client.get(next_links[0])
    assert second_response.status_code == 200
    second = second_response.content.decode()
    assert titles_in_order(second, titles) == titles[25:]
    assert len(titles_in_order(second, titles)) == 5
    back_links = [h for h in parse(second).hrefs if parse_qs(urlsplit(h).query).get("page")]
    assert back_links, "page 2 has no link back to page 1"
    back = parse_qs(urlsplit(back_links[0]).query)
    assert back == {"q": ["PAGED"], "filter": ["needs-hero"], "sort": ["title"], "page": ["1"]}


# Counts and thumbnails ----------------------------------------------------------------------


def test_a_row_shows_how_many_candidates_wait_and_how_many_are_approved(editor_client, editor) -> None:
    busy = make_article("Busy article")
    add_run(busy, [PENDING, PENDING, APPROVED, REJECTED], seed=1, reviewer=editor)
    add_run(busy, [PENDING, APPROVED, PUBLISHED, UNPUBLISHED], seed=9, reviewer=editor)
    html = list_page(editor_client, q="busy")
    text = page_text(html)
    assert re.search(r"(?<!\d)3 waiting", text), text
    assert re.search(r"(?<!\d)2 approved", text), text

    make_article("Empty article")
    text = page_text(list_page(editor_client, q="empty"))
    assert re.search(r"(?<!\d)0 waiting", text) and re.search(r"(?<!\d)0 approved", text)


def test_a_row_thumbnail_is_the_hero_else_the_newest_candidate_and_never_a_png(editor_client, editor) -> None:
    now = timezone.now()
    with_hero = make_article("Has a hero")
    hero, newer = add_run(with_hero, [APPROVED, PENDING], seed=1, reviewer=editor, created_at=now - timedelta(hours=5))
    (newest_of_hero_article,) = add_run(with_hero, [PENDING], seed=5, created_at=now - timedelta(minutes=1))
    set_hero(with_hero, hero)

    no_hero = make_article("Has no hero")
    (later,) = add_run(no_hero, [PENDING], seed=20, created_at=now - timedelta(minutes=10))
    older = add_run(no_hero, [REJECTED, APPROVED], seed=30, reviewer=editor, created_at=now - timedelta(hours=3))

    nothing = make_article("Has no candidate")

    html = list_page(editor_client)
    rows = row_segments(html, [with_hero, no_hero, nothing])
    assert set(rows) == {with_hero.slug, no_hero.slug, nothing.slug}
    assert {int(pk) for pk in THUMB_PK.findall(rows[with_hero.slug])} == {hero.pk}
    assert thumb_url(hero) in rows[with_hero.slug]
    assert {int(pk) for pk in THUMB_PK.findall(rows[no_hero.slug])} == {later.pk}
    assert thumb_url(later) in rows[no_hero.slug]
    assert THUMB_PK.findall(rows[nothing.slug]) == []
    shown = {int(pk) for pk in THUMB_PK.findall(html)}
    assert shown == {hero.pk, later.pk}
    assert not shown & {newer.pk, newest_of_hero_article.pk, *(c.pk for c in older)}
    assert "image.png" not in html and ".png" not in html


# Query budget -------------------------------------------------------------------------------

LIST_STATUSES = [PENDING, APPROVED, REJECTED, PUBLISHED, UNPUBLISHED]


def populate_list(first: int, last: int, reviewers: list) -> None:  # type: ignore[type-arg]
    """Articles ``first``..``last - 1``: most with runs of candidates in mixed states, some heroes."""
    now = timezone.now()
    for n in range(first, last):
        article = make_article(f"Load article {n:03d}", updated_ago=timedelta(minutes=n))
        if n % 5 == 4:
            continue  # no runs at all
        reviewer = reviewers[n % len(reviewers)]
        statuses = [LIST_STATUSES[(n + i) % len(LIST_STATUSES)] for i in range(3)]
        candidates = add_run(article, statuses, seed=n * 10, reviewer=reviewer, created_at=now - timedelta(hours=n))
        if n % 2:
            add_run(article, [PENDING, APPROVED], seed=n * 10 + 5, reviewer=reviewer, created_at=now)
        approved = [c for c in candidates if c.review_status == APPROVED]
        if approved and n % 3 == 0:
            set_hero(article, approved[0])


def count_queries(client, url: str) -> tuple[int, str, list[str]]:  # type: ignore[no-untyped-def]
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries), response.content.decode(), [q["sql"] for q in captured.captured_queries]


@pytest.mark.parametrize("url", ["/", "/?q=LOAD&filter=waiting&sort=waiting"])
def test_the_list_makes_as_many_queries_for_100_articles_as_for_10(editor_client, url) -> None:
    reviewers = [make_user(f"reviewer-{i}", "editors") for i in range(4)]
    populate_list(0, 10, reviewers)
    editor_client.get(url)  # one-time caches (session, content types) out of the way
    small, small_html, small_sql = count_queries(editor_client, url)

    populate_list(10, 100, reviewers)
    large, large_html, large_sql = count_queries(editor_client, url)

    # The larger page really shows more rows and thumbnails, so the budget covers them.
    assert len(THUMB_PK.findall(large_html)) > len(THUMB_PK.findall(small_html)) > 0
    assert large == small, "\n".join(["10 articles:", *small_sql, "", "100 articles:", *large_sql])


def test_the_article_page_makes_as_many_queries_for_100_candidates_as_for_10(editor_client, editor) -> None:
    article = make_article("Crowded article")
    users = [make_user(f"user-{i}", "editors") for i in range(5)]
    preset = StylePreset.objects.first()
    now = timezone.now()

    def add_runs(first: int, last: int, per_run: int) -> None:
        parent = None
        for n in range(first, last):
            statuses = [LIST_STATUSES[(n + i) % 3] for i in range(per_run)]  # pending, approved, rejected
            candidates = add_run(
                article, statuses, seed=n * 100, reviewer=users[n % 5], created_at=now - timedelta(hours=n),
                queued_at=now - timedelta(hours=n), requested_by=users[(n + 1) % 5], parent=parent,
                preset=preset if n % 2 else None, gpu_seconds=1.5, load_seconds=0.5,
            )  # fmt: skip
            parent = candidates[0].run
            for i, candidate in enumerate(candidates):
                if candidate.review_status != PENDING and i % 2 == 0:
                    ReviewEvent.objects.create(
                        candidate=candidate,
                        actor=users[(n + i) % 5],
                        action=ReviewEvent.Action.APPROVE if candidate.review_status == APPROVED else "reject",
                        from_status=PENDING,
                        to_status=candidate.review_status,
                        reason="too dark" if i else "",
                    )

    add_runs(1, 6, 2)  # 10 candidates in 5 runs
    hero = Candidate.objects.filter(run__article=article, review_status=APPROVED).first()
    assert hero is not None
    set_hero(article, hero)
    add_run(article, [], seed=7, status=GenerationRun.Status.QUEUED, queued_at=now, requested_by=editor)
    url = article.get_absolute_url()
    editor_client.get(url)
    small, small_html, small_sql = count_queries(editor_client, url)
    assert len(THUMB_PK.findall(small_html)) >= 10

    add_runs(6, 15, 10)  # 90 more candidates in 9 more runs: 100 in 14 runs
    assert Candidate.objects.filter(run__article=article).count() == 100
    large, large_html, large_sql = count_queries(editor_client, url)

    assert large_html.count('data-testid="hero-badge"') == 1
    assert "waiting for the worker" in large_html
    assert len(set(THUMB_PK.findall(large_html))) == 100
    assert large == small, "\n".join(["10 candidates:", *small_sql, "", "100 candidates:", *large_sql])
