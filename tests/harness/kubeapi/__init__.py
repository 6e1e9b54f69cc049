"""An in-repo fake Kubernetes API server for the kubernetes backend's tests (see server.py)."""
