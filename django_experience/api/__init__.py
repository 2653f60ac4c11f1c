"""Django-free client of the Contentful Personalization (Ninetailed) Experience API.

Nothing in this package imports Django: use it from scripts, Celery workers or other frameworks.
"""

from django_experience.api import errors
from django_experience.api.client import ExperienceClient
from django_experience.api.errors import ExperienceAPIError
from django_experience.api.retry import RetryPolicy
from django_experience.api.types import Change, Experience, Profile, ProfileResult, Session

__all__ = [
    "Change",
    "Experience",
    "ExperienceAPIError",
    "ExperienceClient",
    "Profile",
    "ProfileResult",
    "RetryPolicy",
    "Session",
    "errors",
]
