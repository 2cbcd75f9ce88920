"""The production entry point: ``uvicorn hoffdesk_images.asgi:application`` (docs/deploy.md).

Under ASGI the AUTOMATIC1111 and OpenAI image endpoints wait for a run as coroutines (see
``api.compat.RunWatcher``): a client waiting minutes for its images holds no thread and no
database connection, so it cannot starve the dashboard. Static files are served by WhiteNoise
inside Django, as under WSGI (``hoffdesk_images.middleware.StaticFilesMiddleware`` makes it
async-capable).
"""

from __future__ import annotations

import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hoffdesk_images.settings")
application = get_asgi_application()

# No persistent database connections under ASGI (Django's docs say so too): a connection belongs
# to a thread, and here each request's sync code runs on a thread of its own, so a kept
# connection is never used again, only left open until garbage collection (on PostgreSQL, one
# per request until max_connections). The connection handler shares these dicts, and reads
# CONN_MAX_AGE when a connection opens, so this holds for every connection made from now on.
for database in settings.DATABASES.values():
    database["CONN_MAX_AGE"] = 0
