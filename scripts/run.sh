#!/usr/bin/env bash
# The README's run command: set up, migrate, create the admin on first run, then serve the
# dashboard on 127.0.0.1:8000 together with its worker. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export DJANGO_SETTINGS_MODULE=hoffdesk_images.settings
.venv/bin/python manage.py migrate --no-input
.venv/bin/python manage.py collectstatic --no-input -v 0
.venv/bin/python manage.py bootstrap
exec .venv/bin/python -m hoffdesk_images.run
