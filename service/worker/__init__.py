"""The worker loop: resolves reset requests and delivers the outbox, inside each web process
(`OUTBOX_DISPATCH=inline`) or in `flask outbox run` workers. It is a door: it owns one
transaction per work item, and one item's failure never stops the others."""
