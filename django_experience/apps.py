from django.apps import AppConfig


class ExperienceConfig(AppConfig):
    name = "django_experience"
    verbose_name = "Experience (personalization)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported for their side effects: system checks and signal receivers register here.
        from django_experience import checks, signals  # noqa: F401
        from django_experience.destinations.wiring import connect as connect_destinations

        connect_destinations()  # delivery sinks and import targets, in every process
