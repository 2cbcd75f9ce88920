"""A publish storage that lets a test act at a chosen moment of an upload: the local folder
storage the project uses by default, with hooks called before ``exists`` and ``save``. It is how
the race tests put another editor's click (a reject, an unpublish) between two steps of the
light worker's publish task without touching the task's code."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.files.storage import FileSystemStorage


class HookedStorage(FileSystemStorage):
    before_exists: Callable[[str], None] | None = None
    before_save: Callable[[str], None] | None = None

    def exists(self, name: str) -> bool:
        hook = type(self).before_exists
        if hook is not None:
            hook(name)
        return super().exists(name)

    def _save(self, name: str, content: Any) -> str:
        hook = type(self).before_save
        if hook is not None:
            hook(name)
        return super()._save(name, content)  # type: ignore[misc]  # FileSystemStorage's own


@pytest.fixture
def hooked_publish_storage(settings: Any) -> Iterator[type[HookedStorage]]:
    """The ``publish`` storage replaced by ``HookedStorage`` over the same folder and URL."""
    publish = dict(settings.STORAGES["publish"])
    publish["BACKEND"] = f"{__name__}.HookedStorage"
    settings.STORAGES = {**settings.STORAGES, "publish": publish}
    HookedStorage.before_exists = HookedStorage.before_save = None
    yield HookedStorage
    HookedStorage.before_exists = HookedStorage.before_save = None
