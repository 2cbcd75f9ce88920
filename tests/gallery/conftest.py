"""Gallery fixtures: the hooked publish storage of the race tests."""

from __future__ import annotations

from tests.gallery.publish_hooks import hooked_publish_storage  # noqa: F401  (a fixture for the race tests)
