"""Channel adapters: vendor payloads in, replies out. Thin: they call endpoints, nothing more."""
