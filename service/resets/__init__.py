"""Password resets: self-service requests and how the dispatcher resolves them (`requests`),
issuing a link or a temporary password with its mail (`issuing`), link tokens and confirming
a new password through one (`links`), and the settings every reset follows (`policy`)."""
