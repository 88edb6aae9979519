"""The service: HTTP API, Redis stores, configuration, local services and the CLI."""
