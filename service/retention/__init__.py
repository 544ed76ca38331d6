"""Retention: how long processed reset requests, finished outbox rows and audit events are
kept, and the housekeeping that deletes what is older, in small batches."""
