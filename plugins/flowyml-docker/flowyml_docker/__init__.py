"""flowyml-docker: execution units in Docker containers, and the one image builder.

``flowyml_docker.images`` builds a project into an image tagged by its content
and pushes it; every remote plugin (Vertex AI, SageMaker, Kubernetes) builds
its images through it, so that there is one copy of that logic.
"""

__version__ = "0.1.0"
