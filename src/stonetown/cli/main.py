"""`stonetown`: argument parsing and dispatch.

Client subcommands connect to 127.0.0.1:50051 unless --endpoint or STONETOWN_ENDPOINT says
otherwise, and send the key from --preshared-key or STONETOWN_PRESHARED_KEY.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stonetown.cli.allocator import ALLOCATORS, use_allocator
from stonetown.core.errors import StonetownError, Unavailable

if TYPE_CHECKING:
    from stonetown.client import Client

EXIT_ERROR = 2


def _client_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument(
        "--endpoint",
        default=os.environ.get("STONETOWN_ENDPOINT", "127.0.0.1:50051"),
        help="server address host:port (env STONETOWN_ENDPOINT; default %(default)s)",
    )
    group.add_argument(
        "--preshared-key",
        default=os.environ.get("STONETOWN_PRESHARED_KEY"),
        help="the server's preshared key (env STONETOWN_PRESHARED_KEY)",
    )
    group.add_argument(
        "--tls", action="store_true", help="connect with TLS (system CA roots unless --ca-cert)"
    )
    group.add_argument("--ca-cert", help="PEM file of the CA (or self-signed cert) to trust; implies --tls")
    group.add_argument("--server-name", help="TLS server name to verify instead of the endpoint's host")
    group.add_argument("--timeout", type=float, default=30.0, help="per-call deadline in seconds")
    parent.add_argument("--json", action="store_true", help="print JSON (one document per line)")
    return parent


def _read_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("consistency (default: fully consistent)")
    group.add_argument("--consistency", choices=("minimize_latency", "fully_consistent"))
    group.add_argument("--at-least-as-fresh", metavar="TOKEN", help="read at or after TOKEN's revision")
    group.add_argument("--at-exact-snapshot", metavar="TOKEN", help="read exactly at TOKEN's revision")
    return parent


def _caveat_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--context", metavar="JSON", help="caveat context, a JSON object")
    parent.add_argument(
        "--contextual", metavar="TUPLE", action="append", help="a contextual relationship (repeatable)"
    )
    return parent


def _add_datastore_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--datastore",
        default="stonetown.db",
        help="SQLite file, 'memory', or 'postgres' (with --datastore-uri; default %(default)s)",
    )
    parser.add_argument(
        "--datastore-uri",
        metavar="URI",
        default=os.environ.get("STONETOWN_DATASTORE_URI"),
        help="postgresql://user:password@host:port/database for --datastore postgres "
        "(env STONETOWN_DATASTORE_URI)",
    )


def _add_serve(subparsers: Any) -> None:
    serve = subparsers.add_parser(
        "serve", help="run the server", description="Run the Stonetown gRPC server."
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    serve.add_argument(
        "--port", type=int, default=50051, help="port (0: pick a free one; default %(default)s)"
    )
    _add_datastore_options(serve)
    serve.add_argument(
        "--schema", metavar="FILE", help="schema to write at start if it differs from the stored one"
    )
    serve.add_argument("--bootstrap", metavar="FILE", help="validation YAML loaded once into an empty store")
    serve.add_argument(
        "--preshared-key",
        default=os.environ.get("STONETOWN_PRESHARED_KEY"),
        help="require `authorization: bearer KEY` on every call (env STONETOWN_PRESHARED_KEY)",
    )
    serve.add_argument("--tls-cert", metavar="FILE", help="PEM certificate chain")
    serve.add_argument("--tls-key", metavar="FILE", help="PEM private key")
    serve.add_argument("--insecure", action="store_true", help="allow a non-loopback address without a key")
    serve.add_argument(
        "--workers", type=int, default=1, help="processes sharing the port (default %(default)s)"
    )
    serve.add_argument(
        "--max-depth", type=int, default=50, help="recursion depth limit (default %(default)s)"
    )
    serve.add_argument(
        "--allocator", choices=ALLOCATORS, help="pymalloc (least memory per relationship) or malloc "
        "(~25%% more; memory returns after a burst): re-executes with PYTHONMALLOC (default: as started)",
    )  # fmt: skip
    serve.add_argument(
        "--max-watch-streams",
        type=int,
        default=1000,
        help="Watch streams served at once per worker; more get RESOURCE_EXHAUSTED (default %(default)s)",
    )
    serve.add_argument(
        "--max-expand-size",
        type=int,
        default=10_000,
        help="nodes + subjects of one Expand tree; larger get RESOURCE_EXHAUSTED (default %(default)s)",
    )
    serve.add_argument(
        "--max-concurrent-rpcs",
        type=int,
        default=None,
        help="calls with the key served at once per worker (Watch streams included); more get "
        "RESOURCE_EXHAUSTED (default: no limit; health has a budget of its own)",
    )
    serve.add_argument("--max-message-bytes", type=int, default=4 * 1024 * 1024)
    serve.add_argument("--max-updates-per-write", type=int, default=1000, help="updates + preconditions")
    serve.add_argument("--max-checks-per-bulk", type=int, default=1000)
    serve.add_argument("--max-page-size", type=int, default=1000)
    serve.add_argument(
        "--max-relationships-per-import",
        type=int,
        default=1_000_000,
        help="relationships in one ImportRelationships call (default %(default)s)",
    )
    serve.add_argument(
        "--request-timeout",
        type=float,
        default=30.0,
        help="seconds per call, streams included (Watch and ImportRelationships are exempt)",
    )
    serve.add_argument("--shutdown-grace", type=float, default=10.0, help="seconds to drain calls on SIGTERM")
    connections = serve.add_argument_group("connections (bounds for every caller, with or without a key)")
    connections.add_argument(
        "--handshake-timeout",
        type=float,
        default=10.0,
        help="seconds a new connection has to finish TLS and the HTTP/2 preface (default %(default)s)",
    )
    connections.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        help="seconds without a call before a connection is closed (default %(default)s)",
    )
    connections.add_argument(
        "--keepalive-interval",
        type=float,
        default=30.0,
        help="seconds between pings to a quiet peer (default %(default)s)",
    )
    connections.add_argument(
        "--keepalive-timeout",
        type=float,
        default=10.0,
        help="seconds a peer has to answer a ping before its connection is closed (default %(default)s)",
    )
    serve.add_argument("--metrics-addr", metavar="HOST:PORT", help="serve Prometheus metrics here")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.set_defaults(handler=_run_serve)


def _add_serve_testing(subparsers: Any) -> None:
    testing = subparsers.add_parser(
        "serve-testing",
        help="run an in-memory test server: each bearer token gets its own empty store",
        description=(
            "Run an in-memory server for client test suites (like `spicedb serve-testing`): "
            "each distinct `authorization: bearer TOKEN` gets its own isolated, empty store on "
            "first use; both stonetown.v1 and SpiceDB's authzed.api.v1 are served."
        ),
    )
    testing.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    testing.add_argument("--port", type=int, default=50051, help="port (0: a free one; default %(default)s)")
    testing.add_argument(
        "--max-stores", type=int, default=1000, help="stores (tokens) held at most (default %(default)s)"
    )
    testing.add_argument("--max-depth", type=int, default=50, help="recursion limit (default %(default)s)")
    testing.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    testing.set_defaults(handler=_run_serve_testing)


def _run_serve_testing(args: argparse.Namespace) -> int:
    from stonetown.api.server import MEMORY_DATASTORE, ConfigError, ServerConfig, serve

    if args.max_stores < 1:
        print("stonetown serve-testing: --max-stores must be at least 1", file=sys.stderr)
        return EXIT_ERROR
    config = ServerConfig(
        host=args.host,
        port=args.port,
        datastore=MEMORY_DATASTORE,
        max_depth=args.max_depth,
        log_level=args.log_level,
        testing_max_stores=args.max_stores,
        shutdown_grace=1.0,
    )
    try:
        return serve(config)
    except ConfigError as exc:
        print(f"stonetown serve-testing: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _run_serve(args: argparse.Namespace) -> int:
    from stonetown.api.limits import ConnectionLimits, Limits
    from stonetown.api.server import ConfigError, ServerConfig, serve

    config = ServerConfig(
        host=args.host,
        port=args.port,
        datastore=args.datastore,
        datastore_uri=args.datastore_uri if args.datastore == "postgres" else None,
        schema_file=args.schema,
        bootstrap_file=args.bootstrap,
        preshared_key=args.preshared_key,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        insecure=args.insecure,
        workers=args.workers,
        max_depth=args.max_depth,
        max_watch_streams=args.max_watch_streams,
        max_expand_size=args.max_expand_size,
        max_concurrent_rpcs=args.max_concurrent_rpcs,
        limits=Limits(
            max_updates_per_write=args.max_updates_per_write,
            max_checks_per_bulk=args.max_checks_per_bulk,
            max_page_size=args.max_page_size,
            max_relationships_per_import=args.max_relationships_per_import,
            request_timeout=args.request_timeout,
            max_message_bytes=args.max_message_bytes,
        ),
        connections=ConnectionLimits(
            handshake_timeout=args.handshake_timeout,
            idle_timeout=args.idle_timeout,
            keepalive_interval=args.keepalive_interval,
            keepalive_timeout=args.keepalive_timeout,
        ),
        shutdown_grace=args.shutdown_grace,
        metrics_addr=args.metrics_addr,
        log_level=args.log_level,
    )
    try:
        return serve(config)
    except ConfigError as exc:
        print(f"stonetown serve: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _migrate(args: argparse.Namespace) -> int:
    import asyncio

    from stonetown.api.server import POSTGRES_DATASTORE, ConfigError, make_store

    if args.datastore == POSTGRES_DATASTORE and not args.datastore_uri:
        print("stonetown migrate: --datastore postgres needs --datastore-uri", file=sys.stderr)
        return EXIT_ERROR
    try:
        store = make_store(args.datastore, args.datastore_uri)
    except ConfigError as exc:
        print(f"stonetown migrate: {exc}", file=sys.stderr)
        return EXIT_ERROR

    async def run() -> list[tuple[int, str]]:
        if args.datastore != POSTGRES_DATASTORE:
            await store.open()  # SQLite and memory stores migrate when opened
            await store.close()
            return []
        from stonetown.stores.postgres import PostgresDatastore

        assert isinstance(store, PostgresDatastore)
        await store.open()  # applies pending migrations under an advisory lock
        try:
            return list(store.applied_migrations)
        finally:
            await store.close()

    applied = asyncio.run(run())
    for version, description in applied:
        print(f"applied migration {version}: {description}")
    print(f"{'migrated' if applied else 'up to date'}: {args.datastore}")
    return 0


def _schema_fmt(args: argparse.Namespace) -> int:
    from stonetown.schema import compile_schema, format_schema

    source = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    formatted = format_schema(compile_schema(source))
    if args.write and args.file != "-":
        Path(args.file).write_text(formatted)
    else:
        sys.stdout.write(formatted)
    return 0


def _read_source(file: str) -> str:
    return sys.stdin.read() if file == "-" else Path(file).read_text()


def _schema_import_fga(args: argparse.Namespace) -> int:
    import json

    from stonetown.schema import format_schema
    from stonetown.schema.fga import import_fga, import_fga_json, import_fga_modules

    path = Path(args.file)
    if args.file != "-" and path.name == "fga.mod":
        # a modular model: fga.mod names the module files, relative to its folder
        from stonetown.schema.fga import parse_fga_mod

        mod_text = path.read_text()
        files = {
            item.path: (path.parent / item.path).read_text() for item in parse_fga_mod(mod_text).contents
        }
        schema = import_fga_modules(files, mod_text)
    else:
        source = _read_source(args.file)
        if args.file.endswith(".json") or source.lstrip().startswith("{"):
            schema = import_fga_json(json.loads(source))
        else:
            schema = import_fga(source)
    sys.stdout.write(format_schema(schema))
    return 0


def _schema_export_fga(args: argparse.Namespace) -> int:
    from stonetown.schema import compile_schema
    from stonetown.schema.fga import export_fga

    if args.file is None:
        with _connect(args) as client:
            source = client.read_schema().text
    else:
        source = _read_source(args.file)
    sys.stdout.write(export_fga(compile_schema(source)))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from stonetown import validation

    return int(validation.main(list(args.files), args.openfga_cycles))


def _playground(args: argparse.Namespace) -> int:
    from stonetown.playground import serve

    return serve(args.file, host=args.host, port=args.port, browser=not args.no_browser,
                 allow_writes=args.allow_writes)  # fmt: skip


def _connect(args: argparse.Namespace) -> Client:
    """A client for the connection options of `args`."""
    from stonetown.client import Client

    return Client(
        args.endpoint,
        preshared_key=args.preshared_key,
        tls=args.tls,
        ca_cert=args.ca_cert,
        server_name=args.server_name,
        timeout=args.timeout,
    )


def _client_command(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from stonetown.cli import commands

        with _connect(args) as client:
            handler: Callable[[argparse.Namespace, Client], int] = getattr(commands, name)
            return handler(args, client)

    return run


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    from stonetown import __version__

    parser = argparse.ArgumentParser(
        prog="stonetown", description="Stonetown: a Zanzibar-style authorization server and its client."
    )
    parser.add_argument("--version", action="version", version=f"stonetown {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    client_opts, read_opts, caveat_opts = _client_options(), _read_options(), _caveat_options()

    _add_serve(sub)
    _add_serve_testing(sub)
    migrate = sub.add_parser(
        "migrate", help="create or upgrade the datastore's tables (serve also does this at start)"
    )
    _add_datastore_options(migrate)
    migrate.set_defaults(handler=_migrate)

    schema = sub.add_parser("schema", help="write, read, format, import or export a schema")
    schema_sub = schema.add_subparsers(dest="schema_command", required=True, metavar="ACTION")
    write = schema_sub.add_parser("write", parents=[client_opts], help="store a schema file (- for stdin)")
    write.add_argument("file")
    write.set_defaults(handler=_client_command("schema_write"))
    read = schema_sub.add_parser("read", parents=[client_opts], help="print the schema in force")
    read.set_defaults(handler=_client_command("schema_read"))
    fmt = schema_sub.add_parser("fmt", help="format a schema file (no server needed)")
    fmt.add_argument("file")
    fmt.add_argument("-w", "--write", action="store_true", help="rewrite the file instead of printing")
    fmt.set_defaults(handler=_schema_fmt)
    import_fga = schema_sub.add_parser(
        "import-fga",
        help="print an OpenFGA model (DSL, JSON, or fga.mod of a modular model) as a Stonetown schema",
    )
    import_fga.add_argument("file", help="model.fga, model.json, path/to/fga.mod, or - for stdin")
    import_fga.set_defaults(handler=_schema_import_fga)
    export_fga = schema_sub.add_parser(
        "export-fga",
        parents=[client_opts],
        help="print a schema as an OpenFGA model (DSL): FILE, or the schema in force on the server",
    )
    export_fga.add_argument("file", nargs="?", help="a .zed schema file (default: ask the server)")
    export_fga.set_defaults(handler=_schema_export_fga)

    rel = sub.add_parser("rel", help="write, touch, delete or read relationships")
    rel_sub = rel.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (
        ("write", "create relationships (fails if one exists)"),
        ("touch", "create or replace relationships"),
        ("delete", "delete relationships, or every match of --filter"),
    ):
        cmd = rel_sub.add_parser(action, parents=[client_opts], help=text)
        cmd.add_argument(
            "relationships", nargs="*", metavar="TUPLE", help="e.g. document:readme#viewer@user:ana"
        )
        cmd.add_argument("--file", help="file of tuples, one per line (- for stdin)")
        if action == "delete":
            cmd.add_argument("--filter", help="delete every match, e.g. document:readme#viewer")
            cmd.add_argument("--limit", type=int, default=0, help="delete at most this many (0: all)")
        cmd.set_defaults(handler=_client_command("rel_update"))
    rel_read = rel_sub.add_parser(
        "read", parents=[client_opts, read_opts], help="print matching relationships"
    )
    rel_read.add_argument("filter", nargs="?", help="[type[:id|prefix*]][#relation][@type[:id][#relation]]")
    rel_read.add_argument("--limit", type=int, default=0)
    rel_read.set_defaults(handler=_client_command("rel_read"))

    check = sub.add_parser(
        "check",
        parents=[client_opts, read_opts, caveat_opts],
        help="check a permission (exit 0 allowed, 1 denied)",
    )
    check.add_argument("resource", help="e.g. app:scraper")
    check.add_argument("permission")
    check.add_argument("subject", help="e.g. user:ana or team:x#member")
    check.add_argument(
        "--explain",
        action="store_true",
        help="print why: the resolution tree (the granting path, or every branch tried)",
    )
    check.set_defaults(handler=_client_command("check"))

    bulk = sub.add_parser(
        "check-bulk",
        parents=[client_opts, read_opts, caveat_opts],
        help="many checks at one revision (exit 0 all allowed, 1 any denied or conditional)",
        description="Check many permissions at one revision, one output line per check. A check is "
        "`resource#permission@subject`, optionally followed by ` with {json}` (a caveat context "
        "whose keys override --context's).",
    )
    bulk.add_argument(
        "checks", nargs="*", metavar="CHECK", help="e.g. app:scraper#run@user:ana, optionally ' with {JSON}'"
    )
    bulk.add_argument("--file", help="file of checks, one per line (- for stdin; # and // comments)")
    bulk.add_argument(
        "--batch-size", type=int, default=500, help="checks per CheckBulk call (default %(default)s)"
    )
    bulk.set_defaults(handler=_client_command("check_bulk"))

    expand = sub.add_parser(
        "expand", parents=[client_opts, read_opts], help="print a permission's userset tree"
    )
    expand.add_argument("resource")
    expand.add_argument("permission")
    expand.add_argument("--recursive", action="store_true", help="expand subject sets too")
    expand.set_defaults(handler=_client_command("expand"))

    lr = sub.add_parser(
        "lookup-resources",
        parents=[client_opts, read_opts, caveat_opts],
        help="resources a subject can access",
    )
    lr.add_argument("resource_type")
    lr.add_argument("permission")
    lr.add_argument("subject")
    lr.add_argument("--limit", type=int, default=0)
    lr.set_defaults(handler=_client_command("lookup_resources"))

    ls = sub.add_parser(
        "lookup-subjects",
        parents=[client_opts, read_opts, caveat_opts],
        help="subjects that can access a resource",
    )
    ls.add_argument("resource")
    ls.add_argument("permission")
    ls.add_argument("subject_type", help="e.g. user, or team#member")
    ls.add_argument("--limit", type=int, default=0)
    ls.set_defaults(handler=_client_command("lookup_subjects"))

    watch = sub.add_parser("watch", parents=[client_opts], help="print changes as they commit")
    watch.add_argument("--type", action="append", help="only this resource type (repeatable)")
    watch.add_argument("--after", metavar="TOKEN", help="start after this token (default: now)")
    watch.add_argument("--count", type=int, default=0, help="stop after this many revisions")
    watch.set_defaults(handler=_client_command("watch"))

    imp = sub.add_parser("import", parents=[client_opts], help="touch every relationship of a tuple file")
    imp.add_argument("file", help="tuples, one per line (- for stdin)")
    imp.add_argument("--batch-size", type=int, default=500)
    imp.add_argument(
        "--bulk",
        action="store_true",
        help="create every relationship in one all-or-nothing ImportRelationships stream "
        "(fastest; fails, writing nothing, if any relationship is already stored)",
    )
    imp.add_argument("--no-progress", action="store_true")
    imp.set_defaults(handler=_client_command("import_"))

    exp = sub.add_parser(
        "export", parents=[client_opts, read_opts], help="write every relationship as tuples"
    )
    exp.add_argument("file", nargs="?", help="output file (default: stdout)")
    exp.add_argument("--filter", help="only matching relationships")
    exp.add_argument("--no-progress", action="store_true")
    exp.set_defaults(handler=_client_command("export"))

    val = sub.add_parser("validate", help="run validation files (schema, relationships, assertions)")
    val.add_argument("files", nargs="+", metavar="FILE")
    val.add_argument(
        "--openfga-cycles",
        action="store_true",
        help="resolve cycles in the data as OpenFGA does (for files of OpenFGA's answers: fgafuzz's)",
    )
    val.set_defaults(handler=_validate)

    play = sub.add_parser("playground", help="a local web app to write, test and understand a schema")
    play.add_argument("file", nargs="?", help="a validation file (zed validate YAML) or an OpenFGA .fga.yaml")
    play.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    play.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    play.add_argument("--no-browser", action="store_true", help="do not open the page in a browser")
    play.add_argument(
        "--allow-writes", action="store_true", help="let the page push its document to a connected server"
    )
    play.set_defaults(handler=_playground)
    return parser


_CANNOT_CONNECT = ("failed to connect to all addresses", "errors resolving", "DNS resolution failed")


def _unreachable(exc: Unavailable, endpoint: str | None) -> str:
    """The message for an UNAVAILABLE error: when no server could be reached at all, one line
    that says so and how to start or find one; otherwise the server's own message."""
    text = str(exc)
    if endpoint is None or not any(marker in text for marker in _CANNOT_CONNECT):
        return text
    reason = text.rsplit(": ", 1)[-1].strip(" []")  # e.g. "Connection refused"
    return (
        f"cannot reach a Stonetown server at {endpoint} ({reason}); start one with `stonetown serve`, "
        "or point --endpoint (or STONETOWN_ENDPOINT) at a running one"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `stonetown` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # before anything else starts: the interpreter is replaced (argv None: this process's own command)
    refused = use_allocator(getattr(args, "allocator", None), own_process=argv is None)
    if refused is not None:
        print(f"stonetown: {refused}", file=sys.stderr)
        return EXIT_ERROR
    try:
        code = args.handler(args)
    except Unavailable as exc:
        endpoint = getattr(args, "endpoint", None)
        print(f"stonetown: UNAVAILABLE: {_unreachable(exc, endpoint)}", file=sys.stderr)
        return EXIT_ERROR
    except StonetownError as exc:
        label = getattr(exc, "code", "ERROR")
        print(f"stonetown: {label}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, UnicodeDecodeError) as exc:
        print(f"stonetown: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
