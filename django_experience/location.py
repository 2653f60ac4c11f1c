"""Where the visitor is: CDN geo headers and the client IP.

Geo headers of Cloudflare, CloudFront, Vercel and Fastly become the API's ``options.location``;
the client IP (``REMOTE_ADDR`` or a trusted proxy header) becomes ``X-Force-IP`` when the
``location`` feature is on. Neither ever describes the server or a proxy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from django.http import HttpRequest

from django_experience.conf import conf


def _meta_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def _header(meta: Mapping[str, Any], meta_key: str) -> str | None:
    value = meta.get(meta_key)
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if value and len(value) <= 100 else None


# Geo headers of the CDNs we know, as (location key, header) pairs per provider. The first
# provider with a usable country code or city wins; values are never mixed across providers.
_GEO_PROVIDERS: tuple[tuple[tuple[str, str], ...], ...] = (
    (  # Cloudflare (CF-IPCountry always; the rest with "Add visitor location headers")
        ("countryCode", "CF-IPCountry"),
        ("city", "CF-IPCity"),
        ("region", "CF-Region"),
        ("regionCode", "CF-Region-Code"),
        ("continent", "CF-IPContinent"),
        ("postalCode", "CF-Postal-Code"),
        ("timezone", "CF-Timezone"),
        ("latitude", "CF-IPLatitude"),
        ("longitude", "CF-IPLongitude"),
    ),
    (  # Amazon CloudFront (headers enabled in the origin request policy)
        ("countryCode", "CloudFront-Viewer-Country"),
        ("country", "CloudFront-Viewer-Country-Name"),
        ("regionCode", "CloudFront-Viewer-Country-Region"),
        ("region", "CloudFront-Viewer-Country-Region-Name"),
        ("city", "CloudFront-Viewer-City"),
        ("postalCode", "CloudFront-Viewer-Postal-Code"),
        ("timezone", "CloudFront-Viewer-Time-Zone"),
        ("latitude", "CloudFront-Viewer-Latitude"),
        ("longitude", "CloudFront-Viewer-Longitude"),
    ),
    (  # Vercel (city is URL-encoded)
        ("countryCode", "X-Vercel-IP-Country"),
        ("regionCode", "X-Vercel-IP-Country-Region"),
        ("city", "X-Vercel-IP-City"),
        ("continent", "X-Vercel-IP-Continent"),
        ("postalCode", "X-Vercel-IP-Postal-Code"),
        ("timezone", "X-Vercel-IP-Timezone"),
        ("latitude", "X-Vercel-IP-Latitude"),
        ("longitude", "X-Vercel-IP-Longitude"),
    ),
    (  # Fastly (geo variables copied into headers by VCL, named by convention)
        ("countryCode", "Fastly-Geo-Country-Code"),
        ("country", "Fastly-Geo-Country-Name"),
        ("city", "Fastly-Geo-City"),
        ("region", "Fastly-Geo-Region"),
        ("continent", "Fastly-Geo-Continent-Code"),
        ("postalCode", "Fastly-Geo-Postal-Code"),
        ("latitude", "Fastly-Geo-Latitude"),
        ("longitude", "Fastly-Geo-Longitude"),
    ),
    (  # Generic edge headers (Fastly and others)
        ("countryCode", "X-Geo-Country"),
        ("city", "X-Geo-City"),
        ("region", "X-Geo-Region"),
        ("continent", "X-Geo-Continent"),
        ("postalCode", "X-Geo-Postal-Code"),
        ("latitude", "X-Geo-Latitude"),
        ("longitude", "X-Geo-Longitude"),
    ),
)
_UNKNOWN_COUNTRIES = frozenset({"XX", "T1", "ZZ", "--", "A1", "A2"})
_GEO_META = tuple(
    tuple((key, _meta_key(header)) for key, header in provider) for provider in _GEO_PROVIDERS
)
_ANY_GEO_META = frozenset(meta_key for provider in _GEO_META for _, meta_key in provider)


def geo_location(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """``options.location`` from CDN geo headers, or ``None`` when there are none."""
    if _ANY_GEO_META.isdisjoint(meta.keys()):
        return None  # the common case without a CDN: nothing to look at
    for provider in _GEO_META:
        found: dict[str, Any] = {}
        for key, meta_key in provider:
            value = _header(meta, meta_key)
            if value is None:
                continue
            if key == "countryCode":
                value = value.upper()
                if len(value) != 2 or not value.isalpha() or value in _UNKNOWN_COUNTRIES:
                    continue
            elif key in ("city", "region", "country"):
                value = unquote(value)
            found[key] = value
        latitude, longitude = found.pop("latitude", None), found.pop("longitude", None)
        if "countryCode" not in found and "city" not in found:
            continue
        coordinates = _coordinates(latitude, longitude)
        if coordinates is not None:
            found["coordinates"] = coordinates
        return found
    return None


def _coordinates(latitude: str | None, longitude: str | None) -> dict[str, float] | None:
    """The point, or ``None`` for none or one no place has: geo headers come from whoever sends
    them, and a NaN or an infinity would make the whole request body not JSON."""
    if latitude is None or longitude is None:
        return None
    try:
        point = {"latitude": float(latitude), "longitude": float(longitude)}
    except ValueError:
        return None
    # NaN fails both comparisons, so it is refused with every value out of range.
    if not (-90 <= point["latitude"] <= 90 and -180 <= point["longitude"] <= 180):
        return None
    return point


def client_ip(request: HttpRequest) -> str | None:
    """The visitor's public IP: the trusted proxy header (its last address) or REMOTE_ADDR.

    Private, loopback and otherwise non-global addresses are never returned: those belong to
    the server or its proxies, and the API would locate the data centre instead of the visitor.
    """
    header = conf.TRUSTED_IP_HEADER
    raw = request.META.get(header) if header else request.META.get("REMOTE_ADDR")
    if not isinstance(raw, str) or not raw.strip():
        return None
    candidate = _without_port(raw.split(",")[-1].strip())
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    return str(address) if address.is_global else None


def _without_port(text: str) -> str:
    """``203.0.113.7`` from ``203.0.113.7:443`` and ``2001:db8::1`` from ``[2001:db8::1]:443``
    (CloudFront-Viewer-Address and some proxies add the client's port); anything else as is."""
    if text.startswith("["):
        address, bracket, _ = text[1:].partition("]")
        return address if bracket else text
    if text.count(":") == 1:  # one colon: IPv4 with a port (an IPv6 address has several)
        return text.partition(":")[0]
    return text


__all__ = ["client_ip", "geo_location"]
