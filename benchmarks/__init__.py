"""Benchmarks of django-experience: ratios measured side by side in one run (``make bench``).

``python -m benchmarks`` runs all of them; ``python -m benchmarks NAME`` one (``middleware``,
``outage``, ``import``, ``emulator``, ``profile``). Each prints a table and writes a JSON result
under ``benchmarks/results/``.
"""
