# Dockerfile: apiary's container image (see docs/deploy.md). Two stages: `build` compiles a Release
# binary with the -dev packages; the runtime image holds only that binary, its shared libraries and the
# default config, and runs as an unprivileged user. Build and check: ../shared/container/check.sh .
# (or: docker build -t apiary . && docker run -p 8080:8080 apiary).

FROM debian:bookworm-slim AS build
# The build packages are the list scripts/deps.sh installs too (one package a line, '#' comments), so a
# library added to CMakeLists.txt and to that list reaches the image without an edit here.
COPY scripts/packages/build.txt /tmp/build-packages.txt
RUN apt-get update \
    && sed 's/#.*//' /tmp/build-packages.txt | xargs apt-get install -y --no-install-recommends \
    && rm -rf /var/lib/apt/lists/* /tmp/build-packages.txt
WORKDIR /src
# Only what the binary is built from, so edits to docs, tests or bench/ keep the build layer cached.
COPY CMakeLists.txt ./
COPY include include
COPY lib lib
COPY handlers handlers
COPY server server
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DAPIARY_BUILD_TESTS=OFF -DAPIARY_BUILD_BENCH=OFF \
    && cmake --build build -j"$(nproc)" --target apiary \
    && strip build/apiary
# The Debian packages holding the shared libraries the binary really links (libevent's, jansson's,
# libsodium's, hiredis's, libc's), read from ldd, so a library added in CMakeLists.txt needs no edit
# here. ldd prints /lib paths where dpkg may only know the /usr/lib ones, hence the realpath retry.
RUN set -e; : >build/packages; \
    for lib in $(ldd build/apiary | awk '$2 == "=>" && $3 ~ /^\// {print $3}'); do \
        pkg=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(realpath "$lib")"); \
        echo "${pkg%%:*}" >>build/packages; \
    done; \
    sort -u build/packages >build/runtime-packages; cat build/runtime-packages

FROM debian:bookworm-slim
# Only the runtime libraries found above: no compiler, no -dev packages, no apt lists. Plus the system
# CA store, which HTTPS upstreams without their own ca_file are verified against.
COPY --from=build /src/build/runtime-packages /tmp/runtime-packages
RUN apt-get update \
    && xargs -a /tmp/runtime-packages apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* /tmp/runtime-packages \
    && groupadd --gid 10001 apiary \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin apiary \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/apiary
COPY --from=build /src/build/apiary /usr/local/bin/apiary
COPY config/apiary.json /etc/apiary/apiary.json
# Fails the build, not the first start, when a library is missing or the shipped config is invalid.
RUN /usr/local/bin/apiary --version && /usr/local/bin/apiary --check-config --config /etc/apiary/apiary.json

USER 10001:10001
# State: the shipped config's SQLite database is "sqlite:apiary.db", relative to the working directory,
# so the working directory is the one place the unprivileged user may write, and a volume so the data
# outlives the container (docs/deploy.md). A working directory rather than APIARY_SQL_URL: a mounted
# config naming MariaDB, or another SQLite path, still means what it says.
WORKDIR /var/lib/apiary
VOLUME /var/lib/apiary
# The shipped config listens on 127.0.0.1, which is unreachable from outside a container; the environment
# moves it to every address inside the container without a second config file. Flags still win.
ENV APIARY_LISTEN=0.0.0.0:8080
EXPOSE 8080
# apiary drains on SIGTERM (after drain_delay_ms, 0 by default; finishes requests in flight, up to
# drain_timeout_ms, 10 s by default), then exits 0. Give `docker stop -t` more than their sum if you raise them.
STOPSIGNAL SIGTERM
# GET /healthz through the binary itself (no curl in the image); it reads APIARY_LISTEN like the server.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/apiary", "--healthcheck", "--config", "/etc/apiary/apiary.json"]
# Arguments given to `docker run IMAGE ...` are appended: `--threads 2`, or `--config` for another file.
ENTRYPOINT ["/usr/local/bin/apiary", "--config", "/etc/apiary/apiary.json"]
