import json

import pytest

from anybuild.errors import IntegrityError
from anybuild.oci import (
    ContainerConfig,
    Descriptor,
    Digest,
    History,
    ImageConfig,
    Index,
    Manifest,
    MediaType,
    Platform,
    canonical_json,
    parse_document,
)

D = Digest.of_bytes(b"x")
LAYER = {"mediaType": MediaType.OCI_LAYER_GZIP, "digest": str(D), "size": 1}
CONFIG = {"mediaType": MediaType.OCI_CONFIG, "digest": str(D), "size": 1}


def _doc(**fields: object) -> bytes:
    return json.dumps({"schemaVersion": 2, **fields}).encode()


def test_canonical_json_sorted_compact() -> None:
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


def test_manifest_roundtrip_keeps_fields() -> None:
    manifest = Manifest(
        config=Descriptor(media_type=MediaType.OCI_CONFIG, digest=D, size=1),
        layers=(Descriptor(media_type=MediaType.OCI_LAYER_GZIP, digest=D, size=1,
                           annotations={"a": "b"}),),
        annotations={"org.opencontainers.image.source": "x"},
    )
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert manifest.descriptor().digest == Digest.of_bytes(manifest.to_json())


def test_manifest_docker_schema2_parsed() -> None:
    data = _doc(mediaType=MediaType.DOCKER_MANIFEST, config={**CONFIG, "mediaType": MediaType.DOCKER_CONFIG},
                layers=[{**LAYER, "mediaType": MediaType.DOCKER_LAYER_GZIP}])
    manifest = Manifest.from_json(data)
    manifest.require_image()
    assert manifest.media_type is MediaType.DOCKER_MANIFEST


def test_manifest_without_media_type_uses_declared() -> None:
    assert Manifest.from_json(_doc(config=CONFIG, layers=[]), media_type=MediaType.OCI_MANIFEST).layers == ()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (_doc(mediaType="application/vnd.example+json", config=CONFIG, layers=[]), "unknown media type"),
        (json.dumps({"schemaVersion": 1, "config": CONFIG, "layers": []}).encode(), "schemaVersion"),
        (_doc(config=CONFIG, layers=[{**LAYER, "size": -1}]), "negative size"),
        (_doc(config=CONFIG, layers=[{**LAYER, "size": "1"}]), "must be int"),
        (_doc(config=CONFIG, layers=[{**LAYER, "digest": "sha256:abc"}]), "expected 64"),
        (_doc(config=CONFIG), "'layers' must be list"),
        (_doc(mediaType=MediaType.OCI_INDEX, manifests=[]), "expected an image manifest"),
    ],
    ids=["json", "array", "media-type", "schema1", "negative", "size-type", "digest", "no-layers", "index"],
)
def test_manifest_from_json_bad_document_raises(data: bytes, problem: str) -> None:
    with pytest.raises(IntegrityError, match=problem):
        Manifest.from_json(data)


def test_manifest_require_image_unknown_layer_type_raises() -> None:
    manifest = Manifest.from_json(_doc(config=CONFIG, layers=[{**LAYER, "mediaType": "text/plain"}]))
    with pytest.raises(IntegrityError, match="layer 0 has unknown media type 'text/plain'"):
        manifest.require_image()


def test_parse_document_dispatches_on_kind() -> None:
    entry = {**CONFIG, "mediaType": MediaType.OCI_MANIFEST, "platform": {"os": "linux", "architecture": "amd64"}}
    index = parse_document(_doc(mediaType=MediaType.DOCKER_MANIFEST_LIST, manifests=[entry]))
    assert isinstance(index, Index)
    assert index.platforms() == [Platform.parse("linux/amd64")]
    assert isinstance(parse_document(_doc(config=CONFIG, layers=[])), Manifest)


def test_image_config_roundtrip_keeps_unknown_fields() -> None:
    config = ImageConfig(
        platform=Platform.parse("linux/arm/v7"),
        diff_ids=(D,),
        config=ContainerConfig(env=("A=1",), cmd=("sh",), labels={"l": "v"}, exposed_ports=("80/tcp",),
                               extra={"Healthcheck": {"Test": ["NONE"]}}),
        history=(History(created_by="RUN x"), History(created_by="ENV A=1", empty_layer=True)),
        extra={"moby.buildkit.buildinfo.v1": "e30="},
    )
    data = config.to_json()
    assert json.loads(data)["config"]["ExposedPorts"] == {"80/tcp": {}}
    assert ImageConfig.from_json(data) == config


def test_image_config_history_count_mismatch_raises() -> None:
    data = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                       "history": [{"created_by": "RUN x"}]}).encode()
    with pytest.raises(IntegrityError, match="history names 1 layers"):
        ImageConfig.from_json(data)


def test_image_config_missing_rootfs_raises() -> None:
    with pytest.raises(IntegrityError, match="'rootfs' must be dict"):
        ImageConfig.from_json(b'{"architecture":"amd64","os":"linux"}')
