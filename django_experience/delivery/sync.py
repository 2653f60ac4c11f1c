"""The ``sync`` backend: send in the caller's thread (tests and scripts). Never raises."""

from __future__ import annotations

from django_experience.delivery.counters import counters
from django_experience.delivery.sender import report_failure
from django_experience.delivery.sinks import Payload, get_sink


def send_now(sink_name: str, payload: Payload) -> None:
    sink = get_sink(sink_name)
    counters.add("queued")
    try:
        sink.send_now([payload])
    except Exception as exc:
        final = sink.retry_delay(exc) is None
        reason = sink.refusal_reason([payload], exc) if final else "unreachable or failing"
        report_failure(sink, [payload], exc, reason)
    else:
        counters.add("sent")
