"""The `fluxclaw` command line: thin commands over the library, loaded lazily."""
