# Start a throwaway PostgreSQL server on loopback and export DAGSTER_PG_URL pointing at a fresh
# database on it; the server stops and its folder is removed when the sourcing shell exits.
#
#   source .ci/postgres.sh        # then run what needs the server (`.ci/run` does: make test)
#
# Debian's `postgresql` package is installed when no server binaries are found (CI runs as root
# with apt). PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres`
# user (`runuser`). A DAGSTER_PG_URL already set is left alone: that server is used instead.

pg_find_bindir() {
    local dir
    if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
        pg_config --bindir
        return 0
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

pg_as_owner() {
    # Run a server command as the cluster's owner: `postgres` when we are root, else ourselves.
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_stop() {
    if [ -n "${PG_CI_DIR:-}" ] && [ -d "$PG_CI_DIR" ]; then
        pg_as_owner "$PG_CI_BINDIR/pg_ctl" -D "$PG_CI_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$PG_CI_DIR"
    fi
    PG_CI_DIR=""
}

pg_start() {
    if [ -n "${DAGSTER_PG_URL:-}" ]; then
        echo "postgres.sh: DAGSTER_PG_URL is already set; using that server"
        return 0
    fi
    if ! PG_CI_BINDIR=$(pg_find_bindir); then
        echo "postgres.sh: no PostgreSQL server binaries; installing Debian's postgresql package"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq </dev/null || return 1
        apt-get install -y -qq postgresql </dev/null >/dev/null || return 1
        PG_CI_BINDIR=$(pg_find_bindir) || { echo "postgres.sh: postgresql did not install" >&2; return 1; }
    fi
    if [ "$(id -u)" = 0 ] && ! id -u postgres >/dev/null 2>&1; then
        useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres || return 1
    fi
    PG_CI_DIR=$(mktemp -d "${TMPDIR:-/tmp}/jira-pipeline-pg.XXXXXX")
    chmod 755 "$PG_CI_DIR"
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$PG_CI_DIR"
    fi
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
    pg_as_owner "$PG_CI_BINDIR/initdb" -D "$PG_CI_DIR/data" -U postgres --auth=trust \
        --encoding=UTF8 --no-instructions >"$PG_CI_DIR/initdb.log" 2>&1 \
        || { cat "$PG_CI_DIR/initdb.log" >&2; return 1; }
    # Loopback only, socket in our own folder, a small footprint for a 2-core machine.
    pg_as_owner "$PG_CI_BINDIR/pg_ctl" -D "$PG_CI_DIR/data" -l "$PG_CI_DIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_CI_DIR -c max_connections=200 -c fsync=off -c shared_buffers=64MB" \
        start >/dev/null || { cat "$PG_CI_DIR/server.log" >&2; return 1; }
    pg_as_owner "$PG_CI_BINDIR/createdb" -h 127.0.0.1 -p "$port" -U postgres jira_pipeline_ci \
        || return 1
    # The driver is named: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, and
    # dagster-postgres installs psycopg2.
    export DAGSTER_PG_URL="postgresql+psycopg2://postgres@127.0.0.1:$port/jira_pipeline_ci"
    echo "postgres.sh: PostgreSQL $("$PG_CI_BINDIR/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (DAGSTER_PG_URL set)"
}

pg_start || return 1 2>/dev/null || exit 1
trap pg_stop EXIT
