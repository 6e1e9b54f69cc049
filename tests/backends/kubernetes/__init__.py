"""The kubernetes backend: Kaniko Jobs, against the in-repo fake API server (tests/harness/kubeapi)."""
