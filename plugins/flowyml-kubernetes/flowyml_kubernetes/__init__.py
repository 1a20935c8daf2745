"""flowyml orchestrator for Kubernetes."""
