"""Conformance kit for plugin authors: abstract pytest classes per component kind."""
