"""Time to parse a 10,000-line Dockerfile (target: under 0.2 s). Prints; asserts nothing.

Run: .venv/bin/python bench/dockerfile_parse.py
"""

from __future__ import annotations

import time

from anybuild.dockerfile import parse_dockerfile, parse_instructions

BLOCK = """\
# a comment line
FROM --platform=$BUILDPLATFORM node:20-bookworm-slim AS build
ARG NODE_ENV=production VERSION
ENV PATH=/app/node_modules/.bin:$PATH APP_HOME="/srv/app"
WORKDIR /app
COPY --chown=node:node --link package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci && \\
    npm run build -- --mode "$NODE_ENV" && \\
    rm -rf /tmp/*
COPY <<EOF /etc/app.conf
version=${VERSION:-dev}
EOF
LABEL org.opencontainers.image.title="app" org.opencontainers.image.version=$VERSION
EXPOSE 8080/tcp
HEALTHCHECK --interval=30s --timeout=3s CMD wget -qO- http://localhost:8080/health || exit 1
CMD ["node", "dist/server.js"]
"""


def main() -> None:
    lines_per_block = BLOCK.count("\n")
    text = BLOCK * (10_000 // lines_per_block + 1)
    lines = text.count("\n")
    best_parse = best_typed = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        df = parse_dockerfile(text)
        parsed = time.perf_counter()
        parse_instructions(df)
        typed = time.perf_counter()
        best_parse = min(best_parse, parsed - start)
        best_typed = min(best_typed, typed - parsed)
    print(f"parse {lines} lines ({len(df.nodes)} instructions): {best_parse:.3f} s (target < 0.2 s)")
    print(f"typed instructions for them: {best_typed:.3f} s")


if __name__ == "__main__":
    main()
