"""The shell the pods run (busybox ``sh`` of the Kaniko ``-debug`` image), as data.

Paths come from the environment (``WORKSPACE``: the emptyDir; ``DOCKER_CONFIG``:
the registry Secret), never written into the scripts, so the same text runs in a
real pod and, in the tests' fake API server, on the test machine.

- :data:`WAIT_SCRIPT` (init container, exec upload): wait until the context is
  in place (the ``ready`` marker that :data:`RECEIVE_SCRIPT` writes last).
- :data:`RECEIVE_SCRIPT` (run over ``pods/exec``, arguments SIZE SHA256): read
  exactly SIZE bytes of tar from stdin, check their size and sha256, unpack them
  beside the old attempt, then swap and mark ready. It reads a fixed count, so it
  ends on v4 servers too, where the client cannot close stdin; a retry starts over.
- :data:`PULL_SCRIPT` (init container, registry upload): fetch the context blob
  by digest (anonymous, Basic, or the Bearer token dance with the Secret's
  credentials), check it, unpack it, mark ready.
"""

from __future__ import annotations

__all__ = ["PULL_SCRIPT", "RECEIVE_SCRIPT", "WAIT_SCRIPT"]

WAIT_SCRIPT = """\
set -eu
echo "anybuild: waiting for the build context"
while [ ! -e "$WORKSPACE/ready" ]; do sleep 0.2; done
echo "anybuild: build context in place"
"""

_UNPACK = """\
got=$(wc -c < "$WORKSPACE/context.tar")
if [ "$got" -ne "$size" ]; then echo "anybuild: received $got of $size bytes" >&2; exit 3; fi
if ! echo "$sum  $WORKSPACE/context.tar" | sha256sum -c - >/dev/null; then
  echo "anybuild: the context does not match sha256:$sum" >&2; exit 4
fi
rm -rf "$WORKSPACE/incoming"
mkdir "$WORKSPACE/incoming"
tar -x -f "$WORKSPACE/context.tar" -C "$WORKSPACE/incoming"
rm -f "$WORKSPACE/context.tar"
rm -rf "$WORKSPACE/build"
mv "$WORKSPACE/incoming" "$WORKSPACE/build"
touch "$WORKSPACE/ready"
echo "anybuild: context unpacked ($size bytes, sha256:$sum)"
"""

RECEIVE_SCRIPT = (
    """\
set -eu
size="$1"; sum="$2"
rm -f "$WORKSPACE/context.tar"
head -c "$size" > "$WORKSPACE/context.tar"
"""
    + _UNPACK
)

PULL_SCRIPT = (
    """\
set -eu
size="$CONTEXT_SIZE"; sum="${CONTEXT_DIGEST#sha256:}"
url="$CONTEXT_SCHEME://$CONTEXT_REGISTRY/v2/$CONTEXT_REPOSITORY/blobs/$CONTEXT_DIGEST"
out="$WORKSPACE/context.tar"
basic=""
if [ -f "$DOCKER_CONFIG/config.json" ]; then
  basic=$(tr -d '\\n ' < "$DOCKER_CONFIG/config.json" \\
    | sed -n "s/.*\\"$CONTEXT_REGISTRY\\":{[^}]*\\"auth\\":\\"\\([^\\"]*\\)\\".*/\\1/p")
fi
echo "anybuild: pulling the build context $CONTEXT_DIGEST from $CONTEXT_REGISTRY/$CONTEXT_REPOSITORY"
if ! wget -q -O "$out" "$url" 2>/dev/null; then
  challenge=$(wget -S -O /dev/null "$url" 2>&1 | sed -n 's/.*[Ww][Ww][Ww]-[Aa]uthenticate: *//p' | head -n 1)
  case "$challenge" in
    Bearer*)
      realm=$(echo "$challenge" | sed -n 's/.*realm="\\([^"]*\\)".*/\\1/p')
      service=$(echo "$challenge" | sed -n 's/.*service="\\([^"]*\\)".*/\\1/p')
      token_url="$realm?service=$service&scope=repository:$CONTEXT_REPOSITORY:pull"
      if [ -n "$basic" ]; then
        answer=$(wget -q -O - --header "Authorization: Basic $basic" "$token_url")
      else
        answer=$(wget -q -O - "$token_url")
      fi
      token=$(echo "$answer" | tr -d '\\n ' | sed -n 's/.*"\\(access_\\)\\{0,1\\}token":"\\([^"]*\\)".*/\\2/p')
      wget -q -O "$out" --header "Authorization: Bearer $token" "$url"
      ;;
    Basic*)
      wget -q -O "$out" --header "Authorization: Basic $basic" "$url"
      ;;
    *)
      echo "anybuild: cannot pull the build context from $url" >&2; exit 5
      ;;
  esac
fi
"""
    + _UNPACK
)
