import pytest

from anybuild.errors import ExitCode, ReferenceFormatError
from anybuild.registry import Reference

H = "a" * 64
SHA = f"sha256:{H}"

VALID = [
    ("busybox", "docker.io/library/busybox", None, None),
    ("busybox:1.36", "docker.io/library/busybox", "1.36", None),
    ("library/busybox", "docker.io/library/busybox", None, None),
    ("docker.io/busybox", "docker.io/library/busybox", None, None),
    ("index.docker.io/busybox:1", "docker.io/library/busybox", "1", None),
    ("index.docker.io/acme/api", "docker.io/acme/api", None, None),
    ("acme/api", "docker.io/acme/api", None, None),
    ("acme/team/api:v1", "docker.io/acme/team/api", "v1", None),
    ("test_com", "docker.io/library/test_com", None, None),
    ("test.com:tag", "docker.io/library/test.com", "tag", None),
    ("test.com:5000", "docker.io/library/test.com", "5000", None),
    ("test.com/repo:tag", "test.com/repo", "tag", None),
    ("test:5000/repo", "test:5000/repo", None, None),
    ("test:5000/repo:tag", "test:5000/repo", "tag", None),
    (f"test:5000/repo@{SHA}", "test:5000/repo", None, SHA),
    (f"test:5000/repo:tag@{SHA}", "test:5000/repo", "tag", SHA),
    (f"busybox@{SHA}", "docker.io/library/busybox", None, SHA),
    ("localhost/foo", "localhost/foo", None, None),
    ("localhost:5000/foo/bar:1", "localhost:5000/foo/bar", "1", None),
    ("127.0.0.1:5000/foo", "127.0.0.1:5000/foo", None, None),
    ("[::1]:5000/foo:bar", "[::1]:5000/foo", "bar", None),
    ("[2001:db8::1]/foo", "[2001:db8::1]/foo", None, None),
    ("ghcr.io/acme/api:sha-1234abc", "ghcr.io/acme/api", "sha-1234abc", None),
    ("xn--n3h.com/myimage", "xn--n3h.com/myimage", None, None),
    ("lowercase:Uppercase", "docker.io/library/lowercase", "Uppercase", None),
    ("Docker/docker", "Docker/docker", None, None),
    ("foo_bar", "docker.io/library/foo_bar", None, None),
    ("foo__bar", "docker.io/library/foo__bar", None, None),
    ("foo--bar", "docker.io/library/foo--bar", None, None),
    ("foo.bar", "docker.io/library/foo.bar", None, None),
    ("a:" + "t" * 128, "docker.io/library/a", "t" * 128, None),
    ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com/bar/baz/quux", None, None),
]


@pytest.mark.parametrize(("text", "repository", "tag", "digest"), VALID, ids=[v[0][:40] for v in VALID])
def test_reference_parse_valid_normalizes_like_docker(
    text: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = Reference.parse(text)
    assert ref.repository == repository
    assert ref.tag == tag
    assert (str(ref.digest) if ref.digest else None) == digest
    assert Reference.parse(str(ref)) == ref


INVALID = [
    ("", "at least one component"),
    (":justtag", "not a valid"),
    (f"@{SHA}", "not a valid"),
    ("Uppercase:tag", "must be lowercase"),
    ("test:5000/Uppercase/lowercase:tag", "must be lowercase"),
    ("docker.io/docker/Docker", "must be lowercase"),
    ("docker/Docker", "must be lowercase"),
    ("docker///docker", "not a valid"),
    ("repo@sha256:" + "f" * 35, "expected 64"),
    ("validname@invaliddigest:" + "f" * 64, "unsupported digest algorithm"),
    (H, "64-byte hexadecimal"),
    ("-foo", "not a valid"),
    ("foo-", "not a valid"),
    ("foo___bar", "not a valid"),
    ("foo.-bar", "not a valid"),
    ("foo:", "not a valid"),
    ("foo:.tag", "not a valid"),
    ("foo:a:b", "not a valid"),
    ("a:" + "t" * 129, "not a valid"),
    ("a/" * 128 + "a", "not be more than 255"),
    ("[fe80::1%eth0]:5000/foo", "not a valid"),
    ("foo bar", "not a valid"),
    ("https://ghcr.io/acme/api", "not a valid"),
]


@pytest.mark.parametrize(("text", "problem"), INVALID, ids=[v[0][:30] or "empty" for v in INVALID])
def test_reference_parse_invalid_raises_with_hint(text: str, problem: str) -> None:
    with pytest.raises(ReferenceFormatError, match=problem) as info:
        Reference.parse(text)
    assert info.value.hint
    assert info.value.exit_code is ExitCode.USAGE


def test_reference_uppercase_hint_suggests_lowercase() -> None:
    with pytest.raises(ReferenceFormatError) as info:
        Reference.parse("ghcr.io/Acme/API:Tag1")
    assert "'ghcr.io/acme/api:Tag1'" in info.value.hint


@pytest.mark.parametrize(
    ("text", "familiar"),
    [
        ("busybox", "busybox"),
        ("docker.io/library/busybox:1.36", "busybox:1.36"),
        ("acme/api:1", "acme/api:1"),
        ("library/a/b", "library/a/b"),
        ("ghcr.io/acme/api", "ghcr.io/acme/api"),
        (f"busybox@{SHA}", f"busybox@{SHA}"),
    ],
    ids=["bare", "library", "user", "nested-library", "ghcr", "digest"],
)
def test_reference_familiar_matches_docker(text: str, familiar: str) -> None:
    assert Reference.parse(text).familiar == familiar


def test_reference_identifier_defaults_to_latest() -> None:
    ref = Reference.parse("busybox")
    assert ref.identifier == "latest"
    assert ref.defaulted().tag == "latest"
    assert Reference.parse(f"busybox:1@{SHA}").identifier == SHA


def test_reference_api_host_for_docker_hub() -> None:
    assert Reference.parse("busybox").api_host == "registry-1.docker.io"
    assert Reference.parse("127.0.0.1:5000/x").api_host == "127.0.0.1:5000"


def test_reference_in_domain_moves_to_mirror() -> None:
    assert str(Reference.parse("busybox:1.36").in_domain("127.0.0.1:5000")) == "127.0.0.1:5000/library/busybox:1.36"


def test_reference_with_tag_validates_tag() -> None:
    assert str(Reference.with_tag("ghcr.io/a/b", "v1")) == "ghcr.io/a/b:v1"
    with pytest.raises(ReferenceFormatError, match="invalid tag"):
        Reference.with_tag("ghcr.io/a/b", "-bad")
