"""Rules for genuine Dockerfile and context mistakes: never blamed on the environment."""

from __future__ import annotations

import re
from collections.abc import Mapping

from anybuild.diagnose.facts import Fact, fact_str, fact_strings
from anybuild.diagnose.model import Category, Matcher, Rule, RuleContext, Variant

__all__ = ["DOCKERFILE_RULES", "locate_instruction"]

SNIPPET = Matcher(
    pattern=r"^\s*(?P<df_line>\d+)\s*\|\s*>>>\s*(?P<df_text>\S.*?)\s*$",
    keywords=(">>>",),
    examples=("   3 | >>> RUN exit 3",),
    primary=False,
)
_SHELL_PREFIX = re.compile(r"^(?:/bin/(?:ba)?sh -c |RUN\s+)")


def locate_instruction(ctx: RuleContext, needle: str) -> Mapping[str, str]:
    """Where the failing instruction is: BuildKit's ``>>>`` snippet, else the Dockerfile fact."""
    name = fact_str(ctx.facts, Fact.DOCKERFILE_PATH) or "Dockerfile"
    lines = fact_strings(ctx.facts, Fact.DOCKERFILE_LINES)
    if "df_line" in ctx.fields:
        number = int(ctx.fields["df_line"])
        text = ctx.fields.get("df_text") or (lines[number - 1].strip() if 0 < number <= len(lines) else "")
        return {"where": f" ({name} line {number}: `{text}`)" if text else f" ({name} line {number})"}
    wanted = _SHELL_PREFIX.sub("", needle).strip()
    if wanted:
        for number, line in enumerate(lines, start=1):
            if wanted in line:
                return {"where": f" ({name} line {number}: `{line.strip()}`)"}
    return {"where": ""}


def _copy_where(ctx: RuleContext) -> Mapping[str, str]:
    source = (ctx.fields.get("source") or ctx.fields.get("source2") or "").strip('"').lstrip("/")
    fields = dict(locate_instruction(ctx, source))
    excluded = fact_strings(ctx.facts, Fact.DOCKERIGNORE_EXCLUDED_PATHS)
    hit = any(source == p.strip("/") or source.startswith(p.strip("/") + "/") for p in excluded)
    fields["excluded"] = "yes" if hit and source else ""
    fields["source"] = source or "a source"
    return fields


COPY_SOURCE_MISSING = Rule(
    id="copy-source-missing",
    title="COPY/ADD source missing from the context",
    category=Category.DOCKERFILE,
    rank=80,
    matchers=(
        Matcher(
            pattern=r"failed to (?:compute cache key|calculate checksum of ref)[^\"]*\"(?P<source>[^\"]+)\""
            r":? not found|failed to walk .*?: lstat \S*?/(?P<source2>[^/\s:]+): no such file",
            keywords=("cache key", "checksum of ref", "failed to walk"),
            examples=(
                "ERROR: failed to solve: failed to compute cache key: failed to calculate checksum "
                'of ref 0a1b::c2d: "/missing.txt": not found',
                'failed to compute cache key: "/missing.txt" not found: not found',
            ),
        ),
        Matcher(  # BuildKit's error line for the COPY/ADD vertex itself
            pattern=r"(?:^|#\d+ )ERROR: \"(?P<source>/[^\"]+)\":? not found",
            keywords=("not found",),
            examples=('#7 ERROR: "/yarn.lock" not found: not found',),
        ),
        Matcher(
            pattern=r"(?:COPY|ADD) failed: (?:file not found in build context or excluded by "
            r"\.dockerignore: )?(?:stat (?P<source>\S+?): (?:file does not exist|no such file)|no "
            r"source files were specified)",
            keywords=("copy failed", "add failed"),
            examples=(
                "COPY failed: file not found in build context or excluded by .dockerignore: stat "
                "missing.txt: file does not exist",
            ),
        ),
        Matcher(
            pattern=r"building at STEP \"(?:COPY|ADD)[^\"]*\": (?:checking on sources under "
            r"\"[^\"]*\": )?(?:copier: stat: |no files found matching )\"(?P<source>[^\"]+)\"",
            keywords=("checking on sources", "no files found matching"),
            examples=(
                'Error: building at STEP "COPY missing.txt /": checking on sources under "/ctx": '
                'copier: stat: "/missing.txt": no such file or directory',
            ),
        ),
        Matcher(
            pattern=r"(?:building at STEP \"(?:COPY|ADD) (?:--\S+\s+)*(?P<source>\S+)[^\"]*\": )?no items "
            r"matching glob \"(?P<source2>[^\"]+)\" copied(?: \(\d+ (?P<filtered>filtered out) using)?",
            keywords=("no items matching glob",),
            examples=(
                'Error: building at STEP "COPY a /": no items matching glob "/ctx/a" copied (1 '
                'filtered out using /ctx/.dockerignore): no such file or directory',
            ),
        ),
        Matcher(
            pattern=r"failed to get fileinfo for (?P<source>\S+?): lstat|copy failed: no source "
            r"files specified",
            keywords=("fileinfo", "no source files"),
            examples=(
                "error building image: error building stage: failed to get files used from "
                "context: failed to get fileinfo for /kaniko/buildcontext/missing.txt: lstat "
                "/kaniko/buildcontext/missing.txt: no such file or directory",
            ),
        ),
        SNIPPET,
    ),
    cause="The Dockerfile copies {source}, which is not in the build context{where}; this is "
    "a mistake in the Dockerfile or the context, not the environment.",
    remedy="Check the path against the context directory (paths are relative to the context, "
    "not the Dockerfile) and .dockerignore; another backend would fail the same way.",
    other_backend_helps=False,
    defaults={"source": "a source"},
    enrich=_copy_where,
    variants=(
        Variant(
            name="excluded-by-dockerignore",
            when=lambda ctx: ctx.fields.get("excluded") == "yes" or "filtered" in ctx.fields,
            cause="The Dockerfile copies {source}, which .dockerignore excludes from the build "
            "context{where}.",
            remedy="Remove the matching pattern from .dockerignore (or add a `!{source}` "
            "exception), or stop copying it.",
            other_backend_helps=False,
            facts_used=(Fact.DOCKERIGNORE_EXCLUDED_PATHS,),
        ),
    ),
)

UNKNOWN_INSTRUCTION = Rule(
    id="dockerfile-unknown-instruction",
    title="Unknown Dockerfile instruction",
    category=Category.DOCKERFILE,
    rank=90,
    matchers=(
        Matcher(
            pattern=r"(?:parse error (?:on )?line (?P<df_line>\d+): )?unknown instruction: \"?"
            r"(?P<instruction>[^\s\"]+)",
            keywords=("unknown instruction",),
            examples=("ERROR: failed to solve: dockerfile parse error on line 2: unknown "
                      "instruction: RUNN",),
        ),
        Matcher(
            pattern=r"(?:parse error|dockerfile parse error) (?:on )?line (?P<df_line>\d+)",
            keywords=("parse error",),
            examples=("Error response from daemon: dockerfile parse error line 2: unknown "
                      "instruction: RUNN",),
            primary=False,
        ),
    ),
    cause="The Dockerfile has an instruction no builder knows, `{instruction}`{where}: a typo "
    "or a line continuation that lost its backslash.",
    remedy="Fix the spelling, or end the previous line with `\\` if it continues.",
    other_backend_helps=False,
    defaults={"instruction": "?"},
    enrich=lambda ctx: locate_instruction(ctx, ctx.fields.get("instruction", "")),
)

RUN_NONZERO = Rule(
    id="run-nonzero",
    title="A RUN command failed",
    category=Category.DOCKERFILE,
    rank=20,
    matchers=(
        Matcher(
            pattern=r"process \"(?P<command>.+?)\" did not complete successfully: exit code: "
            r"(?P<exit_code>\d+)|executor failed running \[(?P<command2>.+?)\]: (?:exit code: "
            r"|exit status )(?P<exit_code2>\d+)",
            keywords=("did not complete successfully", "executor failed running"),
            examples=('ERROR: failed to solve: process "/bin/sh -c exit 3" did not complete '
                      "successfully: exit code: 3",),
        ),
        Matcher(
            pattern=r"The command '(?P<command>.+?)' returned a non-zero code: (?P<exit_code>\d+)",
            keywords=("non-zero code",),
            examples=("The command '/bin/sh -c exit 3' returned a non-zero code: 3",),
        ),
        Matcher(
            pattern=r"building at STEP \"(?P<command>RUN [^\"]*)\": (?:error )?(?:while running "
            r"runtime: )?exit status (?P<exit_code>\d+)",
            keywords=("building at step",),
            examples=(
                'Error: building at STEP "RUN exit 3": while running runtime: exit status 3',
                'Error: building at STEP "RUN exit 3": exit status 3',
            ),
        ),
        Matcher(  # anybuild's built-in builder
            pattern=r"(?P<file>[^\s:]+):(?P<line>\d+): RUN (?P<command>.+) failed with exit code (?P<exit_code>\d+)",
            keywords=("failed with exit code",),
            examples=("Dockerfile:4: RUN npm ci failed with exit code 1",),
        ),
        Matcher(
            pattern=r"failed to execute command: waiting for process to exit: exit status "
            r"(?P<exit_code>\d+)",
            keywords=("waiting for process to exit",),
            examples=("error building image: error building stage: failed to execute command: "
                      "waiting for process to exit: exit status 3",),
        ),
        SNIPPET,
    ),
    cause="The command `{command}` exited with code {exit_code}{where}: the command itself "
    "failed, so this is the Dockerfile or the code it builds, not the environment.",
    remedy="Read the output just above the error for the command's own message, and fix the "
    "command or the files it uses; another backend would fail the same way.",
    other_backend_helps=False,
    enrich=lambda ctx: {
        "command": ctx.fields.get("command") or ctx.fields.get("command2") or "a RUN command",
        "exit_code": ctx.fields.get("exit_code") or ctx.fields.get("exit_code2") or "?",
        **locate_instruction(ctx, ctx.fields.get("command") or ctx.fields.get("command2") or ""),
    },
)

DOCKERFILE_RULES: tuple[Rule, ...] = (UNKNOWN_INSTRUCTION, COPY_SOURCE_MISSING, RUN_NONZERO)
