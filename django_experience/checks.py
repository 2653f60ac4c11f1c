"""System checks of django-experience (ids ``django_experience.E001`` ...)."""
