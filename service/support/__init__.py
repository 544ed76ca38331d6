"""Support: the agents who answer the phone (`agents`), their console sessions (`sessions`),
their hourly reset quota (`quotas`), and what they may do to a customer's account (`actions`)."""
