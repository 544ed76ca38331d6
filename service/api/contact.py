"""Customer-service details for the website's own pages."""

from __future__ import annotations

from typing import Any

from ..clock import utcnow
from ..contact import contact_details
from ..ratelimits import page_per_ip
from .blueprint import api


@api.get("/contact")
@page_per_ip
def contact() -> dict[str, Any]:
    return contact_details(utcnow())
