"""Where each subcommand lives: `name -> "module:attribute"`, imported on first use.

Each command is a click command in its own module under `anybuild.cli`, so
commands are added without touching each other's code, and `anybuild --help`
does not import the whole library.
"""

from __future__ import annotations

__all__ = ["COMMANDS"]

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
