"""``anybuild doctor --online``: what GitHub's API says about the token, the repository and the workflow.

Four facts, each from an attempt: the repository read with the token (and the
token's scopes, from ``X-OAuth-Scopes`` for classic tokens; fine-grained tokens
are not described by the API, so the answers of the calls stand for them),
whether the workflow file is on the default branch (``workflow_dispatch`` starts
only workflows there) and enabled, and whether Actions is enabled (a setting the
token can read only with administration: read).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from anybuild.backends.github.client import GithubClient, Retry
from anybuild.backends.github.target import resolve_target
from anybuild.backends.github.token import resolve_token
from anybuild.backends.github.workflow import WORKFLOW_DIR
from anybuild.config import GithubSettings
from anybuild.environment.context import ProbeContext
from anybuild.environment.facts import Fact, FactKey, FactValue, Topic
from anybuild.errors import ConfigError, GithubError
from anybuild.redaction import Redactor

__all__ = ["probe_github_online"]


def _fact(key: str, value: FactValue, evidence: str) -> Fact:
    return Fact(key=key, value=value, evidence=evidence, topic=Topic.ACCESS)


def _unknown(why: str) -> list[Fact]:
    return [_fact(key, None, why) for key in (FactKey.GITHUB_REPOSITORY_ACCESS, FactKey.GITHUB_TOKEN_SCOPES,
                                              FactKey.GITHUB_WORKFLOW, FactKey.GITHUB_ACTIONS_ENABLED)]


def _scopes(headers: Mapping[str, str]) -> str:
    parts: list[str] = []
    if "x-oauth-scopes" in headers:
        scopes = headers["x-oauth-scopes"].strip()
        parts.append(f"classic token, scopes: {scopes or '(none)'}")
    else:
        parts.append("fine-grained or app token: GitHub does not list its permissions; the answers below stand "
                     "for them")
    if headers.get("github-authentication-token-expiration"):
        parts.append(f"expires {headers['github-authentication-token-expiration']}")
    return "; ".join(parts)


def probe_github_online(ctx: ProbeContext, known: Mapping[str, FactValue]) -> list[Fact]:
    settings = ctx.github or GithubSettings()
    repository = known.get(FactKey.GITHUB_REPOSITORY)
    if not isinstance(repository, str):
        return _unknown("no GitHub repository (see github.repository)")
    try:
        target = resolve_target(replace(settings, repository=repository), repository_url="", env=ctx.env)
    except ConfigError as exc:
        return _unknown(exc.message)
    token = resolve_token(target.host, env=ctx.env, runner=ctx.runner, gh=ctx.which("gh"))
    if token is None:
        return _unknown(f"no token for {target.host}")
    redactor = Redactor()
    client = GithubClient(api_url=target.api_url, token=token.value, owner=target.owner, repo=target.name,
                          redactor=redactor, transport=ctx.http_transport, timeout=4.0,
                          retry=Retry(attempts=1, max_wait=0.0))
    base = f"{target.api_url}/repos/{target.repository}"
    with client:
        try:
            repo, headers = client.repository_info()
        except GithubError as exc:
            return [_fact(FactKey.GITHUB_REPOSITORY_ACCESS, False, f"token from {token.source}: {exc.message}"),
                    *_unknown("the repository cannot be read with this token")[1:]]
        permissions = repo.get("permissions")
        push = isinstance(permissions, Mapping) and bool(permissions.get("push"))
        facts = [
            _fact(FactKey.GITHUB_REPOSITORY_ACCESS, push,
                  f"GET {base}: 200 with the token from {token.source}; permissions.push={str(push).lower()}"),
            _fact(FactKey.GITHUB_TOKEN_SCOPES, _scopes(headers), f"GET {base}: response headers"),
        ]
        default = str(repo.get("default_branch") or "main")
        path = f"{WORKFLOW_DIR}/{settings.workflow}"
        try:
            present = client.file_exists(path, default)
            workflow = client.workflow(settings.workflow) if present else None
        except GithubError as exc:
            facts.append(_fact(FactKey.GITHUB_WORKFLOW, None, exc.message))
        else:
            state = f", state {workflow.get('state')}" if workflow is not None else ""
            active = present and (workflow is None or workflow.get("state") == "active")
            facts.append(_fact(FactKey.GITHUB_WORKFLOW, active,
                               f"{path} on {default} (the default branch): "
                               f"{'present' if present else 'absent: run `anybuild github init`, commit, push'}"
                               f"{state}"))
        try:
            settings_data = client.actions_permissions()
        except GithubError as exc:
            facts.append(_fact(FactKey.GITHUB_ACTIONS_ENABLED, None, exc.message))
        else:
            if settings_data is None:
                facts.append(_fact(FactKey.GITHUB_ACTIONS_ENABLED, None,
                                   f"GET {base}/actions/permissions: refused (the token needs administration: read)"))
            else:
                enabled = bool(settings_data.get("enabled"))
                facts.append(_fact(FactKey.GITHUB_ACTIONS_ENABLED, enabled,
                                   f"GET {base}/actions/permissions: enabled={str(enabled).lower()}, "
                                   f"allowed_actions={settings_data.get('allowed_actions')}"))
    return [_redacted(f, redactor) for f in facts]


def _redacted(fact: Fact, redactor: Redactor) -> Fact:
    return Fact(key=fact.key, value=fact.value, evidence=redactor(fact.evidence), topic=fact.topic)
