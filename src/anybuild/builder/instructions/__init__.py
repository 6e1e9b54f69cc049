"""One module per group of Dockerfile instructions (kaniko-style): metadata, run, copy."""
