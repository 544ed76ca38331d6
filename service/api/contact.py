"""Customer-service details for the website's own pages."""

from __future__ import annotations

from typing import Any

from service.api.blueprint import api
from service.api.openapi import BOOLEAN, NULLABLE_DATE_TIME, NULLABLE_STRING, STRING, documented, obj
from service.contact.hours import contact_details
from service.platform.clock import utcnow
from service.platform.ratelimits import page_per_ip


@api.get("/contact")
@documented(
    "Customer-service details",
    description="For the website's own help pages: hours in the shop's time zone, and whether it is open now.",
    responses={
        200: obj(
            {
                "email": STRING, "phone": STRING, "fax": STRING, "hours": STRING, "hours_text": {"type": "array", "items": STRING},
                "timezone": STRING, "timezone_abbreviation": NULLABLE_STRING, "open_now": BOOLEAN,
                "closes_at": NULLABLE_DATE_TIME, "next_open": NULLABLE_DATE_TIME,
            }
        )
    },
    errors=["rate_limited"],
)
@page_per_ip
def contact() -> dict[str, Any]:
    return contact_details(utcnow())
