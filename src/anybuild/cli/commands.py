"""Where each subcommand lives: `name -> "module:attribute"`, imported on first use.

Each command is a click command in its own module under `anybuild.cli`, so
commands are added without touching each other's code, and `anybuild --help`
does not import the whole library: it lists each command with its summary from
SUMMARIES (the first sentence of its help; tests/cli/test_startup.py holds the
two equal), without importing any command.
"""

from __future__ import annotations

__all__ = ["COMMANDS", "SUMMARIES"]

COMMANDS: dict[str, str] = {
    "build": "anybuild.cli.build_cmd:build",
    "cache": "anybuild.cli.cache_cmd:cache",
    "cluster": "anybuild.cli.cluster_cmd:cluster",
    "config": "anybuild.cli.config_cmd:config",
    "copy": "anybuild.cli.image_cmds:copy",
    "inspect": "anybuild.cli.image_cmds:inspect",
    "lint": "anybuild.cli.lint_cmd:lint",
    "pull": "anybuild.cli.image_cmds:pull",
    "push": "anybuild.cli.image_cmds:push",
    "diagnose": "anybuild.cli.diagnose_cmd:diagnose",
    "docker-shim": "anybuild.cli.shim_cmd:docker_shim",
    "doctor": "anybuild.cli.doctor_cmd:doctor",
    "github": "anybuild.cli.github_cmd:github",
    "plan": "anybuild.cli.plan_cmd:plan",
    "tags": "anybuild.cli.tags_cmd:tags",
}

# The first sentence of each command's help, as `anybuild --help` lists it.
SUMMARIES: dict[str, str] = {
    "build": "Build images, with the best backend that works here.",
    "cache": "Inspect and prune the built-in builder's step cache.",
    "cluster": "The cluster the kubernetes backend builds in.",
    "config": "Inspect anybuild.toml.",
    "copy": "Copy an image between repositories; within one registry, blobs are mounted, not transferred.",
    "diagnose": "Read a failed build's log (any tool's) and name the root cause, the evidence and the fix.",
    "docker-shim": "Install a `docker` wrapper that hands `docker build` to anybuild when the daemon cannot build.",
    "doctor": "Show what this machine is, which backends can build here, and the fix for each one that cannot.",
    "github": "Build on GitHub's runners: write the workflow that `anybuild build --backend github` dispatches.",
    "inspect": "Show an image's manifest, platforms, config and layers with their sizes.",
    "lint": "Check a Dockerfile (default ./Dockerfile) for devpod and CI pitfalls, or the workflow (--workflow).",
    "plan": "Show the backends that would build here, in order, with the reason for each choice and exclusion.",
    "pull": "Pull an image from a registry into an OCI layout or a docker archive.",
    "push": "Push an image from an OCI layout or a docker archive to a registry.",
    "tags": "Print the tags and OCI labels computed from git like docker/metadata-action.",
}
