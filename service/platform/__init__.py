"""The plumbing every part stands on: settings, the clock, the database and extensions,
errors and their mapping to answers, logging, metrics, request ids, client addresses, rate
limits, security headers, languages, signing and health probes. Nothing here knows a rule."""
