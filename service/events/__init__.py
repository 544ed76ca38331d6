"""Domain events: one call records what happened (an audit row) and queues its webhooks.

Owns the audit trail (`audit`) and the payload of the events sent to the website
(`webhooks`); delivering them is the outbox's job.
"""
