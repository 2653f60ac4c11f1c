"""A project that keeps django-experience's tables in a database of their own (tests only)."""
