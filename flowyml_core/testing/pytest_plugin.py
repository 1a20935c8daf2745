"""pytest11 entry point: fixtures of the flowyml conformance kit."""
