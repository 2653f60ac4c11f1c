"""Contentful Personalization (the Ninetailed Experience API) for server-rendered Django sites."""

__version__ = "0.1.0"
