"""Customer service: its hours, whether it is open now and when it opens next, and how pages
and mail show its details."""
