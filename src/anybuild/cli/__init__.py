"""The command-line front end: parse, call the library, render. Nothing else."""
