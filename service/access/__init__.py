"""Who may call the API: API keys (made once, kept as a hash) and the roles they carry."""
