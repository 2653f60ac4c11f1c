"""Profile destinations besides the Experience API: Experiture and Releva.

Django-free, like ``django_experience.api``: the clients depend on ``requests`` only.
"""

from django_experience.destinations.errors import (
    ClientError,
    DestinationError,
    Forbidden,
    InvalidRecord,
    NotAccepted,
    RateLimited,
    RequestInvalid,
    SchemaMismatch,
    ServerError,
    TransportError,
    Unauthorized,
    UnknownField,
)
from django_experience.destinations.experiture import ExperitureClient, record_from_traits
from django_experience.destinations.releva import (
    RelevaClient,
    RelevaUpsertResult,
    profile_from_traits,
)

__all__ = [
    "ClientError",
    "DestinationError",
    "ExperitureClient",
    "Forbidden",
    "InvalidRecord",
    "NotAccepted",
    "RateLimited",
    "RelevaClient",
    "RelevaUpsertResult",
    "RequestInvalid",
    "SchemaMismatch",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "UnknownField",
    "profile_from_traits",
    "record_from_traits",
]
