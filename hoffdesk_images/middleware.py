"""WhiteNoise, async-capable.

WhiteNoise 6's middleware is sync-only. Under ASGI one sync-only middleware makes Django run the
whole chain below it through ``async_to_sync`` on a thread, so an async view (the image APIs'
waits) would hold that thread after all. Finding a static file is a dict lookup (or, with
autorefresh in debug, a stat); serving it is the same ``WhiteNoiseFileResponse`` as under WSGI.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):  # type: ignore[misc]
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(get_response, *args, **kwargs)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        static_file = self.find_file(request.path_info) if self.autorefresh else self.files.get(request.path_info)
        if static_file is not None:
            return self.serve(static_file, request)  # type: ignore[no-any-return]
        response: Awaitable[HttpResponseBase] = self.get_response(request)
        return await response
