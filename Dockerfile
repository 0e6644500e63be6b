# tinybert-c in containers: every tb-* stage, the shipped data, configs and pipeline files, and the
# entry point that runs one service's steps of a pipeline file (docs/docker.md).
#
#   scripts/docker-base                     # only where no registry can be reached: makes the base image
#   docker build -t tinybert-c .            # classic builder; nothing here needs BuildKit
#   docker-compose up --scale student=3     # see README.md, "Containers"
#
# Build stage: the -dev packages of scripts/install-deps (without the test-only ones: Criterion,
# Python) and a Release-like build of the stages only. The sources sit at /opt/tinybert-c, where
# the runtime image has the data: stage defaults that name shipped files (tb-augment's stopwords
# and word vectors) then point at them.
FROM debian:bookworm-slim AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      build-essential cmake pkg-config \
      libzmq3-dev libmsgpack-dev libblis-openmp-dev libutf8proc-dev libcjson-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/tinybert-c
COPY CMakeLists.txt ./
COPY cmake cmake
COPY common common
COPY stages stages
# the data files the build places beside the executables (cmake/shipped-data.cmake)
COPY data/augment data/augment
COPY data/glove data/glove
ARG BUILD_TYPE=RelWithDebInfo
ARG JOBS=2
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=${BUILD_TYPE} -DTB_TESTS=OFF >/dev/null \
 && cmake --build build -j ${JOBS} \
 && mkdir -p /out/bin \
 && cp build/bin/tb-* /out/bin/ \
 && cp -r build/share /out/share \
 && strip --strip-debug /out/bin/*
COPY docker/runtime-packages docker/runtime-packages
# The Debian packages holding the shared libraries the stages load (ldd), for the runtime stage.
RUN docker/runtime-packages /out/bin/* > /out/runtime-packages && cat /out/runtime-packages

# Runtime stage: the shared libraries only (no compiler, no headers), gnuplot for the loss plots,
# the stages, data/, configs/, pipelines/, and a non-root user.
FROM debian:bookworm-slim
COPY --from=build /out/runtime-packages /tmp/runtime-packages
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      $(cat /tmp/runtime-packages) gnuplot-nox \
 && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages \
 && useradd --system --uid 10001 --user-group --create-home --home-dir /home/tinybert tinybert \
 && mkdir -p /runs \
 && chown tinybert:tinybert /runs
COPY --from=build /out/bin/ /opt/tinybert-c/bin/
COPY --from=build /out/share/ /opt/tinybert-c/share/
COPY data /opt/tinybert-c/data
COPY configs /opt/tinybert-c/configs
COPY pipelines /opt/tinybert-c/pipelines
COPY docker/entrypoint docker/health /opt/tinybert-c/docker/
ENV PATH=/opt/tinybert-c/bin:$PATH \
    TB_HOME=/opt/tinybert-c \
    RUN=/runs
USER tinybert
WORKDIR /runs
VOLUME ["/runs"]
# Healthy while the service's steps wait for their inputs or run; unhealthy once one failed or
# when the stages cannot start (docker/health).
HEALTHCHECK --interval=30s --timeout=10s --start-period=10s --retries=3 CMD ["/opt/tinybert-c/docker/health"]
ENTRYPOINT ["/opt/tinybert-c/docker/entrypoint"]
CMD ["--help"]
