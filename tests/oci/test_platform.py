import pytest

from anybuild.errors import UsageError
from anybuild.oci import Descriptor, Digest, Index, MediaType, Platform


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/x86-64/v1", "linux/amd64"),
        ("linux/amd64/v3", "linux/amd64/v3"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("linux/arm64/8", "linux/arm64"),
        ("linux/arm64/v9.0", "linux/arm64/v9"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/armel", "linux/arm/v6"),
        ("linux/arm/6", "linux/arm/v6"),
        ("linux/i386", "linux/386"),
        ("Linux/AMD64", "linux/amd64"),
        ("macos/arm64", "darwin/arm64"),
        ("arm64", "linux/arm64"),
        ("windows/amd64", "windows/amd64"),
    ],
    ids=lambda v: v.replace("/", "_"),
)
def test_platform_parse_normalizes_like_containerd(text: str, expected: str) -> None:
    assert str(Platform.parse(text)) == expected


@pytest.mark.parametrize("text", ["", "linux//amd64", "a/b/c/d", "linux/am d64"], ids=["empty", "gap", "four", "space"])
def test_platform_parse_malformed_raises_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="invalid platform"):
        Platform.parse(text)


@pytest.mark.parametrize(
    ("want", "have", "rank"),
    [
        ("linux/amd64", "linux/amd64", 0),
        ("linux/arm64", "linux/arm64/v8", 0),
        ("linux/arm/v7", "linux/arm/v6", 1),
        ("linux/arm/v6", "linux/arm/v7", None),
        ("linux/amd64", "linux/arm64", None),
        ("linux/amd64", "windows/amd64", None),
    ],
    ids=["exact", "arm64-v8", "arm-compat", "arm-newer", "arch", "os"],
)
def test_platform_rank_table(want: str, have: str, rank: int | None) -> None:
    assert Platform.parse(want).rank(Platform.parse(have)) == rank


def test_platform_for_machine_host_values() -> None:
    assert str(Platform.for_machine("Linux", "x86_64")) == "linux/amd64"
    assert str(Platform.for_machine("Linux", "aarch64")) == "linux/arm64"


def _entry(platform: str, n: int) -> Descriptor:
    return Descriptor(media_type=MediaType.OCI_MANIFEST, digest=Digest.of_bytes(bytes([n])), size=n,
                      platform=Platform.parse(platform))


def test_index_select_prefers_exact_variant_over_compatible() -> None:
    index = Index(manifests=(_entry("linux/arm/v6", 1), _entry("linux/arm/v7", 2), _entry("linux/amd64", 3)))
    assert index.select(Platform.parse("linux/arm/v7")) == index.manifests[1]
    assert index.select(Platform.parse("linux/arm/v8")) == index.manifests[1]
    assert index.select(Platform.parse("linux/s390x")) is None
