"""The process-wide Experience API clients built from the settings.

One client (one ``requests.Session``, one kept-alive connection pool) per distinct configuration,
so ``override_settings`` in tests gets a client of its own and production reuses connections.
"""

from __future__ import annotations

import os
import threading

from django_experience.api import ExperienceClient
from django_experience.conf import conf

_lock = threading.Lock()
# (organization, environment, API URL, timeout, max_retries, process id)
_clients: dict[tuple[str, str, str, float, int, int], ExperienceClient] = {}


def experience_client(
    *, organization: str | None = None, environment: str | None = None
) -> ExperienceClient:
    """The shared client for the current ``EXPERIENCE_*`` settings.

    ``organization``/``environment`` default to the configured ones; the admin passes a
    mapping's own (a ``staging`` mapping is looked up in ``staging``). Raises ``ValueError``
    for an empty organization id or environment.
    """
    return cached_client(
        timeout=conf.TIMEOUT,
        max_retries=conf.MAX_RETRIES,
        organization=organization,
        environment=environment,
    )


def cached_client(
    *,
    timeout: float,
    max_retries: int,
    organization: str | None = None,
    environment: str | None = None,
) -> ExperienceClient:
    """The shared client for the current settings with this ``timeout`` and ``max_retries``
    (and this organization and environment, when given instead of the configured ones).

    Keyed by process id too, so a forked child never shares the parent's pooled connections.
    """
    if organization is None:
        organization = conf.ORGANIZATION_ID
    if environment is None:
        environment = conf.ENVIRONMENT
    url = conf.API_URL
    key = (organization, environment, url, timeout, max_retries, os.getpid())
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = ExperienceClient(
                    organization,
                    environment=environment,
                    base_url=url,
                    timeout=timeout,
                    max_retries=max_retries,
                )
                _clients[key] = client
    return client


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # another thread of the parent may have held it


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
