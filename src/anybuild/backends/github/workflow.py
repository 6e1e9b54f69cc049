"""The workflow anybuild writes for a repository (``anybuild github init``), as text.

:func:`render_workflow` is a pure function of a :class:`WorkflowSpec` (the images,
the registries they are pushed to, ``[backend.github]`` and the anybuild to
install), so the file can be compared with a golden copy. What the dispatching
side relies on is named once, here, and checked by :mod:`.lint`:

- ``on: workflow_dispatch`` with the inputs :data:`INPUT_REQUEST_ID`,
  :data:`INPUT_IMAGES` (a JSON array of image names) and :data:`INPUT_ARGS` (a JSON
  array of ``anybuild build`` arguments);
- ``run-name`` carrying the request id, so a run is found again when the API does
  not answer the dispatch with the run's id;
- one job per image (a matrix), named after the image;
- each image's ``anybuild.result/v1`` record uploaded as the artifact
  ``anybuild-result-<image>``.

The dispatched input values never reach a shell line as expressions: they are
passed in environment variables and parsed with ``jq``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from anybuild.backends.github.pins import CHECKOUT, SETUP_PYTHON, UPLOAD_ARTIFACT, ActionPin
from anybuild.config import Config, GithubSettings

__all__ = [
    "ARTIFACT_PREFIX",
    "INPUT_ARGS",
    "INPUT_IMAGES",
    "INPUT_REQUEST_ID",
    "RESULT_FILE",
    "RUN_NAME_PREFIX",
    "WORKFLOW_DIR",
    "RegistryLogin",
    "WorkflowSpec",
    "push_hosts",
    "registry_login",
    "render_workflow",
    "workflow_spec",
]

WORKFLOW_DIR = ".github/workflows"
INPUT_REQUEST_ID = "request-id"
INPUT_IMAGES = "images"
INPUT_ARGS = "args"
RUN_NAME_PREFIX = "anybuild "
ARTIFACT_PREFIX = "anybuild-result-"
RESULT_FILE = "anybuild-result.json"
GHCR = "ghcr.io"
_DOCKER_HUB = "docker.io"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryLogin:
    """How the workflow logs in to one registry: the job's token (ghcr.io) or two repository secrets."""

    host: str
    secret_prefix: str = ""  # "" for ghcr.io, which takes the job's GITHUB_TOKEN

    @property
    def username_secret(self) -> str:
        return f"{self.secret_prefix}_USERNAME"

    @property
    def password_secret(self) -> str:
        return f"{self.secret_prefix}_PASSWORD"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowSpec:
    """Everything the workflow text depends on."""

    images: tuple[str, ...]
    logins: tuple[RegistryLogin, ...] = ()
    settings: GithubSettings = field(default_factory=GithubSettings)
    requirement: str = "anybuild"  # what pip installs, e.g. "anybuild==0.1.0"
    working_directory: str = "."  # where anybuild.toml is, relative to the repository root
    config_name: str = "anybuild.toml"
    default_args: tuple[str, ...] = field(default=("--push",))


def push_hosts(config: Config) -> tuple[str, ...]:
    """The registries the images of *config* are pushed to, in the file's order."""
    hosts: list[str] = []
    for spec in config.images:
        first, sep, _ = spec.repository.partition("/")
        host = first if sep and ("." in first or ":" in first or first == "localhost") else _DOCKER_HUB
        hosts.append(host)
    return tuple(dict.fromkeys(hosts))


def registry_login(host: str, settings: GithubSettings) -> RegistryLogin:
    """ghcr.io takes the job's token; any other registry two repository secrets, named after it."""
    if host in settings.secrets:
        return RegistryLogin(host=host, secret_prefix=settings.secrets[host])
    if host == GHCR:
        return RegistryLogin(host=host)
    if host == _DOCKER_HUB:
        return RegistryLogin(host=host, secret_prefix="DOCKERHUB")  # noqa: S106 - a secret's name
    return RegistryLogin(host=host, secret_prefix=re.sub(r"[^A-Z0-9]+", "_", host.upper()).strip("_"))


def workflow_spec(config: Config, *, requirement: str, working_directory: str = ".") -> WorkflowSpec:
    settings = config.backend.github
    return WorkflowSpec(
        images=tuple(spec.name for spec in config.images),
        logins=tuple(registry_login(host, settings) for host in push_hosts(config)),
        settings=settings,
        requirement=settings.anybuild or requirement,
        working_directory=working_directory,
        config_name=config.file.name if config.file else "anybuild.toml",
    )


# --- rendering ---------------------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z0-9_$][A-Za-z0-9 _./@+=(){}$-]*$")


def _quote(text: str) -> str:
    """A YAML scalar for *text*: plain where YAML reads it back as this string, else quoted."""
    reserved = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}
    if _PLAIN.match(text) and text.lower() not in reserved and not re.fullmatch(r"[0-9.+-e]+", text) \
            and not text.endswith(" "):
        return text
    if "'" not in text and "\n" not in text:
        return f"'{text}'"
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def _uses(pin: ActionPin) -> str:
    return f"{pin.uses} # {pin.version}"


def _block(lines: Sequence[str], indent: int) -> list[str]:
    pad = " " * indent
    return [pad + line if line else "" for line in lines]


_BUILD_SCRIPT = r"""set -euo pipefail
# The arguments arrive as a JSON array in an environment variable, never as shell text.
if ! jq -e 'type == "array" and all(.[]; type == "string" and (contains("\n") | not))' \
    <<<"$ANYBUILD_ARGS" >/dev/null; then
  echo "::error title=anybuild::the args input must be a JSON array of one-line strings"
  exit 2
fi
mapfile -t args < <(jq -r '.[]' <<<"$ANYBUILD_ARGS")
status=0
anybuild build "$IMAGE" --json --progress plain --metadata-file "$RESULT" "${args[@]}" || status=$?
if [ -f "$RESULT" ]; then
  digest=$(jq -r '.images[0].digest // ""' "$RESULT")
  if [ -n "$digest" ]; then
    echo "digest=$digest" >> "$GITHUB_OUTPUT"
    echo "::notice title=$IMAGE::$digest"
    echo "| $IMAGE | \`$digest\` |" >> "$GITHUB_STEP_SUMMARY"
  fi
fi
exit "$status"
"""


def _login_step(login: RegistryLogin) -> list[str]:
    user, password = login.username_secret, login.password_secret
    server = "" if login.host == _DOCKER_HUB else f" {login.host}"
    script = [
        'if [ -z "$REGISTRY_USERNAME" ] || [ -z "$REGISTRY_PASSWORD" ]; then',
        f'  echo "::error title=anybuild::set the repository secrets {user} and {password} to push to '
        f'{login.host} (Settings, Secrets and variables, Actions)"',
        "  exit 1",
        "fi",
        f'printf \'%s\' "$REGISTRY_PASSWORD" | docker login{server} --username "$REGISTRY_USERNAME" --password-stdin',
    ]
    return [
        f"- name: {_quote(f'Log in to {login.host}')}",
        "  env:",
        f"    REGISTRY_USERNAME: ${{{{ secrets.{user} }}}}",
        f"    REGISTRY_PASSWORD: ${{{{ secrets.{password} }}}}",
        "  run: |",
        *_block(script, 4),
    ]


def render_workflow(spec: WorkflowSpec) -> str:
    """The text of ``.github/workflows/<settings.workflow>`` for *spec*."""
    settings = spec.settings
    ghcr = any(login.host == GHCR and not login.secret_prefix for login in spec.logins)
    images_default = json.dumps(list(spec.images), separators=(",", ":"))
    args_default = json.dumps(list(spec.default_args), separators=(",", ":"))
    runs_on = settings.runs_on[0] if len(settings.runs_on) == 1 else json.dumps(list(settings.runs_on))
    permissions = ["contents: read"]
    if ghcr:
        permissions.append("packages: write  # push to ghcr.io with the job's token")
    if settings.id_token:
        permissions.append("id-token: write  # [backend.github] id-token = true")
    lines = [
        f"# Written by `anybuild github init` for {spec.config_name}. `anybuild build --backend github`",
        "# dispatches it, follows each image's job and reads back the results. After an edit, check it",
        "# with `anybuild lint --workflow`; `anybuild github init --force` writes it anew.",
        "name: anybuild",
        f"run-name: {RUN_NAME_PREFIX}${{{{ inputs.{INPUT_REQUEST_ID} }}}}",
        "",
        "on:",
        "  workflow_dispatch:",
        "    inputs:",
        f"      {INPUT_REQUEST_ID}:",
        "        description: Set by anybuild to find this run again (any text when started by hand)",
        "        required: false",
        "        default: manual",
        "        type: string",
        f"      {INPUT_IMAGES}:",
        f"        description: {_quote(f'JSON array of the images of {spec.config_name} to build')}",
        "        required: false",
        f"        default: {_quote(images_default)}",
        "        type: string",
        f"      {INPUT_ARGS}:",
        "        description: JSON array of more arguments of anybuild build",
        "        required: false",
        f"        default: {_quote(args_default)}",
        "        type: string",
        "",
        "permissions:",
        "  contents: read",
        "",
        "concurrency:",
        "  group: anybuild-${{ github.ref }}",
        "  cancel-in-progress: false",
        "",
        "jobs:",
        "  build:",
        "    name: ${{ matrix.image }}",
        f"    runs-on: {_quote(runs_on) if len(settings.runs_on) == 1 else runs_on}",
        f"    timeout-minutes: {settings.timeout_minutes}",
        "    permissions:",
        *_block(permissions, 6),
        "    strategy:",
        "      fail-fast: false",
        "      matrix:",
        f"        image: ${{{{ fromJSON(inputs.{INPUT_IMAGES}) }}}}",
        "    outputs:",
        "      # With a matrix the image that finishes last sets it; anybuild reads every image's artifact.",
        "      digest: ${{ steps.build.outputs.digest }}",
        "    defaults:",
        "      run:",
        "        shell: bash",
        f"        working-directory: {_quote(spec.working_directory)}",
        "    steps:",
        "      - name: Check out the dispatched commit",
        f"        uses: {_uses(CHECKOUT)}",
        "        with:",
        "          persist-credentials: false",
        "          fetch-depth: 0  # tags and history: the tag rules read them",
        "      - name: Name the default branch for the tag rules",
        "        env:",
        "          DEFAULT_BRANCH: ${{ github.event.repository.default_branch }}",
        '        run: git remote set-head origin "$DEFAULT_BRANCH"',
        f"      - name: {_quote(f'Set up Python {settings.python}')}",
        f"        uses: {_uses(SETUP_PYTHON)}",
        "        with:",
        f"          python-version: {json.dumps(settings.python)}",
        f"      - name: {_quote(f'Install {spec.requirement}')}",
        "        env:",
        f"          REQUIREMENT: {_quote(spec.requirement)}",
        '        run: python -m pip install --disable-pip-version-check "$REQUIREMENT"',
    ]
    for login in spec.logins:
        if login.secret_prefix:
            lines += _block(_login_step(login), 6)
    build_env = [
        "IMAGE: ${{ matrix.image }}",
        f"ANYBUILD_ARGS: ${{{{ inputs.{INPUT_ARGS} }}}}",
        f"RESULT: ${{{{ runner.temp }}}}/{RESULT_FILE}",
    ]
    if ghcr:
        build_env.append("GITHUB_TOKEN: ${{ github.token }}  # anybuild pushes to ghcr.io with it")
    lines += [
        "      - name: Build ${{ matrix.image }}",
        "        id: build",
        "        env:",
        *_block(build_env, 10),
        "        run: |",
        *_block(_BUILD_SCRIPT.rstrip("\n").splitlines(), 10),
        "      - name: Publish the result of ${{ matrix.image }}",
        "        if: always()",
        f"        uses: {_uses(UPLOAD_ARTIFACT)}",
        "        with:",
        f"          name: {ARTIFACT_PREFIX}${{{{ matrix.image }}}}",
        f"          path: ${{{{ runner.temp }}}}/{RESULT_FILE}",
        "          if-no-files-found: ignore",
        "          retention-days: 7",
    ]
    return "\n".join(lines) + "\n"
