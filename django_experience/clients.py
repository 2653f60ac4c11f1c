"""The process-wide Experience API client built from the settings.

One client (one ``requests.Session``, one kept-alive connection pool) per distinct configuration,
so ``override_settings`` in tests gets a client of its own and production reuses connections.
"""

from __future__ import annotations

import threading

from django_experience.api import ExperienceClient
from django_experience.conf import conf

_lock = threading.Lock()
_clients: dict[tuple[str, str, str, float, int], ExperienceClient] = {}


def experience_client() -> ExperienceClient:
    """The shared client for the current ``EXPERIENCE_*`` settings."""
    key = (conf.ORGANIZATION_ID, conf.ENVIRONMENT, conf.API_URL, conf.TIMEOUT, conf.MAX_RETRIES)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = ExperienceClient(
                    key[0], environment=key[1], base_url=key[2], timeout=key[3], max_retries=key[4]
                )
                _clients[key] = client
    return client
