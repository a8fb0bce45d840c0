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
RUN swift build -c release --static-swift-stdlib \
      --product stack-entrypoint --product rotate-secrets --product trigger-fast-rotate --product stack-emulator \
    && mkdir -p /out \
    && cp "$(swift build -c release --show-bin-path)"/{stack-entrypoint,rotate-secrets,trigger-fast-rotate,stack-emulator} /out/

FROM scratch
COPY --from=build /out/ /
