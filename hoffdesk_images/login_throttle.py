"""Login throttling with two limits: a username from one address, and an address alone.

django-axes (8.3) compares one failure count with one limit (``AXES_FAILURE_LIMIT``): with
``AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]`` it takes the larger
of the pair's and the address's counts, so both would lock at the same number. We want the
address alone to lock only at ``HOFFDESK_LOGIN_ADDRESS_FAILURE_LIMIT`` (higher: one office behind
one address makes honest typos under many names), and a username never on its own: anyone who
can reach /login/ could otherwise keep the admin locked out. This handler (``AXES_HANDLER``)
reports the address's count in units of the pair's limit, which locks exactly when the address
reaches its own limit, and lets a success reset only its own pair's count.
"""

from __future__ import annotations

from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet, Sum

# The order get_failures relies on: the pair first, then the address.
LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]


def _failures(attempts: QuerySet[Any]) -> int:
    total: int | None = attempts.aggregate(total=Sum("failures_since_start"))["total"]
    return total or 0


class PairAndAddressHandler(AxesDatabaseHandler):
    def _pair_and_address(self, request: Any, credentials: dict[str, Any] | None) -> list[QuerySet[Any]]:
        if settings.AXES_LOCKOUT_PARAMETERS != LOCKOUT_PARAMETERS:
            raise ImproperlyConfigured(f"{__name__} needs AXES_LOCKOUT_PARAMETERS = {LOCKOUT_PARAMETERS!r}")
        return list(self.get_user_attempts(request, credentials))

    def get_failures(self, request: Any, credentials: dict[str, Any] | None = None) -> int:
        """The pair's failures, or the address's scaled to the pair's limit, whichever is more.

        ``address * pair_limit // address_limit`` reaches ``pair_limit`` exactly when ``address``
        reaches ``address_limit`` (both whole numbers), so axes' one comparison does both."""
        pair, address = (_failures(attempts) for attempts in self._pair_and_address(request, credentials))
        pair_limit = int(settings.AXES_FAILURE_LIMIT)
        return max(pair, address * pair_limit // settings.HOFFDESK_LOGIN_ADDRESS_FAILURE_LIMIT)

    def reset_user_attempts(self, request: Any, credentials: dict[str, Any] | None = None) -> int:
        """A success resets its own username-and-address count only: one good login (say, an
        attacker's own account) must not wipe the failures an address made under other names."""
        count, _ = self._pair_and_address(request, credentials)[0].delete()
        return count
