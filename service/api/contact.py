"""Customer-service details for the website's own pages."""

from __future__ import annotations

from typing import Any

from service.api.blueprint import api
from service.contact.hours import contact_details
from service.platform.clock import utcnow
from service.platform.ratelimits import page_per_ip


@api.get("/contact")
@page_per_ip
def contact() -> dict[str, Any]:
    return contact_details(utcnow())
