"""Bulk import of existing customers (``manage.py experience_import``).

A streaming pipeline: a source yields rows with line numbers, a target turns batches of rows
into requests, the pipeline sends batches concurrently (never two at once for one profile),
retries with backoff, reports bad rows and checkpoints progress so a re-run can resume.
"""

from django_experience.sync.pipeline import Summary
from django_experience.sync.runner import ImportConfig, describe, run_import
from django_experience.sync.targets import ImportTarget, TargetOptions, register_target

__all__ = [
    "ImportConfig",
    "ImportTarget",
    "Summary",
    "TargetOptions",
    "describe",
    "register_target",
    "run_import",
]
