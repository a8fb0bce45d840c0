# Builds the four executables for Linux (glibc) with the Swift runtime linked statically,
# so the images below need no Swift toolchain. Shared by the other Dockerfiles:
#   docker build -f docker/build.Dockerfile -t stack-emulator-binaries .
ARG SWIFT_IMAGE=swift:6.3-bookworm
FROM ${SWIFT_IMAGE} AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libpq-dev libzstd-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources Sources
COPY Tests Tests
COPY Benchmarks Benchmarks
# One product per invocation: `swift build` honours only the last --product.
RUN for product in stack-entrypoint rotate-secrets trigger-fast-rotate stack-emulator; do \
        swift build -c release --static-swift-stdlib --product "$product" || exit 1; \
    done \
    && mkdir -p /out \
    && cp "$(swift build -c release --static-swift-stdlib --show-bin-path)"/{stack-entrypoint,rotate-secrets,trigger-fast-rotate,stack-emulator} /out/

FROM scratch
COPY --from=build /out/ /
