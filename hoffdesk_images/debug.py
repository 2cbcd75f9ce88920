"""What Django's error reports may show (the debug page, the mail to ADMINS).

Django hides settings and request headers whose names contain API, TOKEN, KEY, SECRET, PASS,
SIGNATURE or HTTP_COOKIE. Two more carry secrets here: ``DATABASE_URL`` (its password, in the
environment the development server copies into every request's META) and the
``Authorization`` header (an API token, or a password in HTTP Basic).
"""

from __future__ import annotations

import re

from django.views.debug import SafeExceptionReporterFilter


class HoffdeskReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile("API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DATABASE_URL|AUTHORIZATION", re.I)
