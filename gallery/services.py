"""Importing articles from the content pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from gallery.models import Article

IMPORT_FIELDS = ("slug", "title", "summary", "content_type", "tone", "series")


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    updated: dict[str, list[str]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)


class ImportInvalid(Exception):
    """Bad records, each as (index, field, message). Nothing of the file was written."""

    def __init__(self, problems: list[tuple[int, str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"record {i}: {f}: {m}" for i, f, m in problems))


def _record_problems(index: int, record: Any, seen: dict[str, int]) -> list[tuple[int, str, str]]:
    if not isinstance(record, dict):
        return [(index, "-", f"must be an object, not {type(record).__name__}")]
    problems = [(index, key, "unknown field") for key in record if key not in IMPORT_FIELDS]
    for name in IMPORT_FIELDS:
        if name in record and record[name] is not None and not isinstance(record[name], str):
            problems.append((index, name, f"must be a string, not {type(record[name]).__name__}"))
    if problems:
        return problems
    values = {k: (record.get(k) or "").strip() for k in IMPORT_FIELDS}
    values["content_type"] = values["content_type"] or Article._meta.get_field("content_type").default
    try:
        Article(**values).full_clean(exclude=["hero_candidate"], validate_unique=False)
    except ValidationError as exc:
        problems += [(index, f, " ".join(msgs)) for f, msgs in exc.message_dict.items()]
    slug = values["slug"]
    if slug in seen:
        problems.append((index, "slug", f"duplicates record {seen[slug]}"))
    seen[slug] = index
    return problems


def articles_import(*, records: Any) -> ImportReport:
    """Create or update articles by slug, all or nothing; ``ImportInvalid`` lists every problem."""
    if not isinstance(records, list):
        raise ImportInvalid([(-1, "-", "the file must hold a JSON array of article objects")])
    seen: dict[str, int] = {}
    problems = [p for i, r in enumerate(records) for p in _record_problems(i, r, seen)]
    if problems:
        raise ImportInvalid(problems)
    report = ImportReport()
    with transaction.atomic():
        for record in records:
            values = {k: (record.get(k) or "").strip() for k in IMPORT_FIELDS if k in record}
            article = Article.objects.select_for_update().filter(slug=values["slug"]).first()
            if article is None:
                Article.objects.create(**values)
                report.created.append(values["slug"])
                continue
            changed = [k for k, v in values.items() if getattr(article, k) != v]
            if changed:
                for key in changed:
                    setattr(article, key, values[key])
                article.save()
                report.updated[article.slug] = changed
            else:
                report.unchanged.append(article.slug)
    return report
