"""What rate limits count by: the client's address and the username or email a request names."""

from __future__ import annotations

import ipaddress

from flask import request
from werkzeug.exceptions import HTTPException

from service.platform.sealing import email_hashes, username_hash


def client_ip() -> str:
    """The client's address as ProxyFix resolved it; never read from a header directly."""
    return request.remote_addr or "unknown"


# One IPv6 customer is handed a whole /64 (RFC 6177): counted per address, they would have 2**64.
IPV6_PREFIX = 64


def rate_limit_key_for_ip(address: str) -> str:
    """What per-address limits count by: an IPv4 address as it is, an IPv6 one by its /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


def client_rate_limit_key() -> str:
    """The per-address rate-limit key of this request's client (the audit trail keeps the full address)."""
    return rate_limit_key_for_ip(client_ip())


def submitted_username() -> str:
    """The normalised username in a JSON body or form, so one name is limited however spelt.

    Missing and malformed names count under one shared key, so they are limited too.
    """
    try:
        if request.is_json:
            body = request.get_json(silent=True)
            raw = body.get("username") if isinstance(body, dict) else None
        else:
            raw = request.form.get("username")
    except (HTTPException, RecursionError):
        # A body too large (413), cut short or nested too deep: the view answers that error itself; raising here,
        # inside Flask-Limiter, would only be logged as a storage failure and loosen the limits.
        return "username:"
    if not isinstance(raw, str):
        return "username:"
    # Cut before normalising, exactly as the request is stored and later looked up: cutting
    # after would let padding (`"   ...victim"`) give every request a fresh key for one account.
    # A keyed hash, not the name: the limiter writes its keys to its storage (Redis) and to its
    # log line, and people type passwords and email addresses into that box.
    return "username:" + username_hash(raw)


def submitted_email() -> str:
    """A keyed hash of the email address in a JSON body or form, so one address is limited however
    spelt, and the rate-limit store (Redis) never holds an address in clear."""
    try:
        if request.is_json:
            body = request.get_json(silent=True)
            raw = body.get("email") if isinstance(body, dict) else None
        else:
            raw = request.form.get("email")
    except (HTTPException, RecursionError):
        return "email:"
    if not isinstance(raw, str):
        return "email:"
    return "email:" + email_hashes(raw)[0]
