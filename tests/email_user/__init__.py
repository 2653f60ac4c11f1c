"""A project whose user model has no ``username``: signs in by e-mail (tests only)."""
