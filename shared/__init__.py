"""Code shared by the Hear-o services: taxonomy, wire messages, feature specs, settings, database."""
