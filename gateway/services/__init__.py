"""What the two faces (partner API, operators' dashboard) and the CLI do, each action written
once: a route or a command parses its input and calls one of these; the SQL is in the
repositories. Services open their own unit of work."""
