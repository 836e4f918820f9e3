"""`stonetown serve`: the gRPC server, its worker processes and its start-up steps.

One worker is one asyncio process with its own PermissionSystem over the shared store. With
``workers > 1`` the parent prepares the store (schema, bootstrap), then starts that many
worker processes that all listen on the same port (SO_REUSEPORT); the kernel spreads
connections among them, and revision tokens from one are honoured by all because each engine
catches up through the store's change log.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import ipaddress
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from stonetown.api.authzed import SERVICE_NAMES as AUTHZED_SERVICE_NAMES
from stonetown.api.authzed import add_authzed_services
from stonetown.api.health import follow_store_health, set_all
from stonetown.api.interceptor import ServingLayer
from stonetown.api.limits import ConnectionLimits, Limits
from stonetown.api.logs import configure_logging
from stonetown.api.metrics import observe_system, serve_metrics
from stonetown.api.pauses import PauseRecorder
from stonetown.api.pb import SERVICE_NAMES, permission_grpc, relationship_grpc, schema_grpc
from stonetown.api.rpc_metrics import publish as publish_rpc_stats
from stonetown.api.runtime import (
    give_back_freed_memory,
    hand_over_gil_sooner,
    limit_malloc_arenas,
    pace_collector,
)
from stonetown.api.servicers.permissions import PermissionServicer
from stonetown.api.servicers.preserialized import PreSerialized
from stonetown.api.servicers.relationships import RelationshipServicer
from stonetown.api.servicers.schema import SchemaServicer
from stonetown.api.testing import RoutedSystem, StoresPerToken
from stonetown.api.tls import TlsFileError, server_credentials
from stonetown.core.errors import NotFound
from stonetown.engine.change_feed import MAX_WATCHERS
from stonetown.engine.datastore import Datastore, Update, UpdateOp
from stonetown.engine.expand import MAX_EXPAND_SIZE
from stonetown.engine.system import MAX_DEPTH_LIMIT, PermissionSystem

log = logging.getLogger("stonetown.server")

MEMORY_DATASTORE = "memory"
# More than this many worker exits within the window is a crash loop: the server stops.
WORKER_RESTART_LIMIT = 10
WORKER_RESTART_WINDOW = 60.0
POSTGRES_DATASTORE = "postgres"
# Both APIs: stonetown.v1 and SpiceDB's authzed.api.v1.
ALL_SERVICE_NAMES = (*SERVICE_NAMES, *AUTHZED_SERVICE_NAMES)


class ConfigError(ValueError):
    """The server settings are inconsistent or unsafe; the message says what to change."""


@dataclass(slots=True)
class ServerConfig:
    """Everything `stonetown serve` can be told."""

    host: str = "127.0.0.1"
    port: int = 50051
    datastore: str = "stonetown.db"  # a SQLite file path, "memory", or "postgres"
    datastore_uri: str | None = None  # the PostgreSQL URI when datastore is "postgres"
    schema_file: str | None = None
    bootstrap_file: str | None = None
    preshared_key: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure: bool = False
    workers: int = 1
    max_depth: int = 50
    max_watch_streams: int = MAX_WATCHERS  # Watch streams per worker; beyond it RESOURCE_EXHAUSTED
    max_expand_size: int = MAX_EXPAND_SIZE  # nodes + subjects of one Expand tree
    max_concurrent_rpcs: int | None = None  # admitted at once; beyond it RESOURCE_EXHAUSTED
    limits: Limits = field(default_factory=Limits)
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    shutdown_grace: float = 10.0
    metrics_addr: str | None = None
    log_level: str = "info"
    # serve-testing: an empty in-memory store per bearer token, at most this many (None: serve)
    testing_max_stores: int | None = None


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts local connections."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_config(config: ServerConfig) -> None:
    """Raise ConfigError for settings that cannot work or are unsafe."""
    if config.preshared_key is not None and not config.preshared_key.strip():
        raise ConfigError("the preshared key is empty")
    if not is_loopback(config.host) and config.preshared_key is None and not config.insecure:
        raise ConfigError(
            f"refusing to listen on non-loopback address {config.host} without --preshared-key "
            "(pass --insecure to do it anyway)"
        )
    if config.metrics_addr is not None:
        metrics_host = config.metrics_addr.rpartition(":")[0].strip("[]") or "127.0.0.1"
        if not is_loopback(metrics_host) and config.preshared_key is None and not config.insecure:
            raise ConfigError(
                f"refusing to serve metrics on non-loopback address {metrics_host} without "
                "--preshared-key (pass --insecure to do it anyway)"
            )
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    if config.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if config.testing_max_stores is not None and (config.workers != 1 or config.preshared_key):
        raise ConfigError("serve-testing runs one worker and takes no preshared key (tokens pick stores)")
    if config.workers > 1 and config.datastore == MEMORY_DATASTORE:
        raise ConfigError("--workers > 1 needs a shared datastore file, not the in-memory one")
    if not 1 <= config.max_depth <= MAX_DEPTH_LIMIT:
        raise ConfigError(f"--max-depth must be between 1 and {MAX_DEPTH_LIMIT}")
    if config.max_watch_streams < 1:
        raise ConfigError("--max-watch-streams must be at least 1")
    if config.max_expand_size < 1:
        raise ConfigError("--max-expand-size must be at least 1")
    if config.max_concurrent_rpcs is not None and config.max_concurrent_rpcs < 1:
        raise ConfigError("--max-concurrent-rpcs must be at least 1")
    connections = config.connections
    for option, seconds in (
        ("--handshake-timeout", connections.handshake_timeout),
        ("--idle-timeout", connections.idle_timeout),
        ("--keepalive-interval", connections.keepalive_interval),
        ("--keepalive-timeout", connections.keepalive_timeout),
    ):
        if not 0 < seconds < 10**6:
            raise ConfigError(f"{option} must be a positive number of seconds (below 1000000)")
    if config.datastore == POSTGRES_DATASTORE and not config.datastore_uri:
        raise ConfigError("--datastore postgres needs --datastore-uri (or STONETOWN_DATASTORE_URI)")
    if config.datastore != POSTGRES_DATASTORE and config.datastore_uri:
        raise ConfigError("--datastore-uri goes with --datastore postgres")


def make_store(datastore: str, uri: str | None = None) -> Datastore:
    """The datastore named by `datastore`: "memory", "postgres" (at `uri`) or a SQLite file path."""
    if datastore == POSTGRES_DATASTORE:
        from stonetown.stores.postgres import PostgresDatastore

        if not uri:
            raise ConfigError("--datastore postgres needs --datastore-uri")
        return PostgresDatastore(uri)
    if datastore == MEMORY_DATASTORE:
        from stonetown.stores.memory import MemoryDatastore

        return MemoryDatastore()
    from stonetown.stores.sqlite import SqliteDatastore

    return SqliteDatastore(datastore)


async def prepare_store(system: PermissionSystem, config: ServerConfig) -> None:
    """Load the bootstrap file into an empty store, then write --schema if it differs."""
    if config.bootstrap_file is not None:
        from stonetown.validation import load_validation_file

        schema_text, relationships = load_validation_file(config.bootstrap_file)
        if await system.store.head_revision() == 0:
            if schema_text.strip():
                await system.write_schema(schema_text)
            if relationships:
                await system.write_relationships([Update(UpdateOp.TOUCH, rel) for rel in relationships])
            log.info(
                "bootstrapped", extra={"file": config.bootstrap_file, "relationships": len(relationships)}
            )
        else:
            log.info("bootstrap skipped: the store is not empty", extra={"file": config.bootstrap_file})
    if config.schema_file is not None:
        text = Path(config.schema_file).read_text()
        try:
            stored: str | None = (await system.read_schema()).text
        except NotFound:
            stored = None
        if stored is None or stored.strip() != text.strip():
            revision = await system.write_schema(text)
            log.info("schema written", extra={"file": config.schema_file, "revision": revision})


def _bind_address(host: str, port: int) -> str:
    return f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host}:{port}"


def build_server(
    system: PermissionSystem,
    config: ServerConfig,
    *,
    reuse_port: bool,
    stores: StoresPerToken | None = None,
) -> tuple[aio.Server, health.aio.HealthServicer, int]:
    """A configured (not started) server, its health servicer and the port bound. With
    `stores` (serve-testing), each call is routed to its bearer token's store."""
    limits = config.limits
    # No grpc maximum_concurrent_rpcs: it counts calls before they are authenticated, and
    # health with them; the serving layer admits calls after authentication instead.
    server = aio.server(
        options=[
            ("grpc.max_receive_message_length", limits.max_message_bytes),
            ("grpc.max_send_message_length", limits.max_message_bytes),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            *config.connections.grpc_options(),
        ],
    )
    # every service goes through the serving layer (auth, admission, errors, metrics, logs);
    # health stays open, with its own budget; serve-testing routes calls to their token's store
    served = ServingLayer(
        config.preshared_key,
        limits.request_timeout,
        max_concurrent=config.max_concurrent_rpcs,
        max_health_watches=config.connections.max_health_watches,
    ).registrar(server)
    routed = served if stores is None else stores.registrar(served)
    permission_grpc.add_PermissionServiceServicer_to_server(PermissionServicer(system, limits), routed)
    relationship_grpc.add_RelationshipServiceServicer_to_server(
        RelationshipServicer(system, limits), PreSerialized(routed, {"Watch"})
    )
    schema_grpc.add_SchemaServiceServicer_to_server(SchemaServicer(system), routed)
    add_authzed_services(routed, system, limits)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, served)
    # what reflection.enable_server_reflection does for an aio server, through the layer
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer((*ALL_SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME)),
        served,
    )
    address = _bind_address(config.host, config.port)
    try:
        if config.tls_cert is not None and config.tls_key is not None:
            port = server.add_secure_port(address, tls_credentials(config))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:  # grpc's "Failed to bind": say why, in one line
        port = 0
    if port == 0:
        check_port_free(config.host, config.port)
        raise ConfigError(f"cannot listen on {address}")
    return server, health_servicer, port


def tls_credentials(config: ServerConfig) -> grpc.ServerCredentials:
    """The server's TLS credentials; ConfigError naming the bad file and what is wrong."""
    assert config.tls_cert is not None and config.tls_key is not None
    try:
        return server_credentials(config.tls_cert, config.tls_key)
    except TlsFileError as exc:
        raise ConfigError(str(exc)) from None


def check_port_free(host: str, port: int) -> None:
    """ConfigError, in one line saying what to change, when `host:port` cannot be listened on
    (checked without SO_REUSEPORT, so a running server's port counts as taken)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            address = _bind_address(host, port)
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {host} is in use (is another `stonetown serve` running?); "
                    "choose another with --port"
                ) from None
            if exc.errno == errno.EACCES:
                raise ConfigError(
                    f"no permission to listen on {address}; choose another with --port"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ConfigError(f"{host} is not an address of this machine (--host)") from None
            raise ConfigError(f"cannot listen on {address}: {exc.strerror or exc}") from None


async def start_system(config: ServerConfig) -> PermissionSystem:
    """A started PermissionSystem over the configured store. Over PostgreSQL, shared by other
    nodes, its index is woken by LISTEN/NOTIFY on every commit (the system's poll stays as
    the fallback)."""
    store = make_store(config.datastore, config.datastore_uri)
    system = PermissionSystem(
        store,
        max_depth=config.max_depth,
        max_expand_size=config.max_expand_size,
        max_watchers=config.max_watch_streams,
    )
    await system.start()
    if config.datastore == POSTGRES_DATASTORE:
        from stonetown.stores.postgres import PostgresDatastore

        assert isinstance(store, PostgresDatastore)
        store.listen(system.catch_up)
    return system


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """Set `stop` once the process that started this worker is gone (even by SIGKILL), so no
    orphaned worker keeps serving on the port."""
    while os.getppid() == parent:
        await asyncio.sleep(0.5)
    log.warning("the server process is gone; stopping", extra={"pid": os.getpid(), "parent": parent})
    stop.set()


async def run_worker(
    config: ServerConfig, *, prepare: bool, reuse_port: bool, parent: int | None = None
) -> None:
    """Serve until SIGTERM or SIGINT (or, given `parent`, until that process is gone), then
    drain in-flight calls and close the store."""
    limit_malloc_arenas()
    hand_over_gil_sooner()
    stores: StoresPerToken | None = None
    if config.testing_max_stores is not None:
        stores = StoresPerToken(config.testing_max_stores, config.max_depth)
        system: PermissionSystem = RoutedSystem()  # type: ignore[assignment]
    else:
        system = await start_system(config)
    try:
        # Bound before the store is touched: a second server started by mistake on a port in
        # use fails here, without writing its --schema over the running server's.
        server, health_servicer, port = build_server(system, config, reuse_port=reuse_port, stores=stores)
        if prepare and stores is None:
            await prepare_store(system, config)
        # The loaded index is millions of long-lived objects: moved out of the cyclic
        # collector's generations, a full collection no longer walks them all (pauses of
        # hundreds of ms at 1M relationships). Freed objects are still freed by refcount.
        gc.collect()
        gc.freeze()
        pace_collector()
        pauses = PauseRecorder()
        pauses.start()
        await server.start()
        await set_all(health_servicer, health_pb2.HealthCheckResponse.SERVING)
        health_follower = asyncio.create_task(follow_store_health(system, health_servicer))
        release = system.release_idle_caches if stores is None else None
        release_store = system.store.release_memory if stores is None else None
        trimmer = asyncio.create_task(give_back_freed_memory(release, release_store=release_store))
        # before "listening": whoever waits for that line may stop the server right after it
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        log.info(
            "listening",
            extra={
                "address": _bind_address(config.host, port),
                "pid": os.getpid(),
                "tls": config.tls_cert is not None,
                "auth": config.preshared_key is not None,
            },
        )
        watchdog = asyncio.create_task(_watch_parent(parent, stop)) if parent is not None else None
        observe = config.metrics_addr and stores is None
        observer = asyncio.create_task(observe_system(system)) if observe else None
        await stop.wait()
        for task in (watchdog, observer, health_follower, trimmer):
            if task is not None:
                task.cancel()
        log.info("shutting down", extra={"pid": os.getpid(), "grace_seconds": config.shutdown_grace})
        await health_servicer.enter_graceful_shutdown()
        await server.stop(config.shutdown_grace)
        await pauses.stop()
        if observe:
            publish_rpc_stats()  # the calls answered while draining
    finally:
        await (system.stop() if stores is None else stores.stop())
    log.info("stopped", extra={"pid": os.getpid()})


def _worker_main(config: ServerConfig, parent: int) -> None:
    configure_logging(config.log_level)
    asyncio.run(run_worker(config, prepare=False, reuse_port=True, parent=parent))


async def _prepare_only(config: ServerConfig) -> None:
    system = PermissionSystem(make_store(config.datastore, config.datastore_uri), max_depth=config.max_depth)
    await system.start()
    try:
        await prepare_store(system, config)
    finally:
        await system.stop()


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host.strip("[]"), 0))
        return int(sock.getsockname()[1])


def serve(config: ServerConfig) -> int:
    """Run the server in the foreground until a signal; return the process exit code.

    A SQLite file is locked for the server's lifetime (one server per file; its workers share
    it): a second server on the same path refuses to start."""
    configure_logging(config.log_level)
    check_config(config)
    if config.tls_cert is not None:
        tls_credentials(config)  # a bad file is named before anything starts
    # Before the store is touched (a second server started by mistake must not rewrite the
    # running one's schema), and in one line rather than grpc's log; --workers bind with
    # SO_REUSEPORT, which another server's port would not refuse, so this is their only check.
    check_port_free(config.host, config.port)
    if config.datastore not in (MEMORY_DATASTORE, POSTGRES_DATASTORE):
        from stonetown.stores.sqlite import lock_database

        lock = lock_database(config.datastore)
        try:
            return _serve(config)
        finally:
            lock.close()
    return _serve(config)


def _serve(config: ServerConfig) -> int:
    if config.workers == 1:
        if config.metrics_addr:
            metrics_port = _serve_metrics(config.metrics_addr, config.preshared_key)
            log.info("metrics", extra={"address": f"{config.metrics_addr.rpartition(':')[0]}:{metrics_port}"})
        asyncio.run(run_worker(config, prepare=True, reuse_port=False))
        return 0
    return _serve_workers(config)


def _serve_metrics(address: str, preshared_key: str | None) -> int:
    try:
        return serve_metrics(address, preshared_key)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"cannot serve metrics on {address} ({reason}); choose another --metrics-addr"
        ) from None


def _serve_workers(config: ServerConfig) -> int:
    asyncio.run(_prepare_only(config))
    if config.port == 0:
        config.port = _free_port(config.host)
    metrics_dir: tempfile.TemporaryDirectory[str] | None = None
    if config.metrics_addr:
        metrics_dir = tempfile.TemporaryDirectory(prefix="stonetown-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir.name
        metrics_port = _serve_metrics(config.metrics_addr, config.preshared_key)
        log.info("metrics", extra={"address": f"{config.metrics_addr.rpartition(':')[0]}:{metrics_port}"})
    context = multiprocessing.get_context("spawn")

    def new_worker(n: int) -> multiprocessing.process.BaseProcess:
        return context.Process(target=_worker_main, args=(config, os.getpid()), name=f"stonetown-worker-{n}")

    workers = [new_worker(n) for n in range(config.workers)]
    restarts: list[float] = []
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {signum: signal.signal(signum, request_stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        for worker in workers:
            worker.start()
        log.info("workers started", extra={"workers": config.workers, "port": config.port})
        failed = False
        while not stopping and not failed:
            multiprocessing.connection.wait([worker.sentinel for worker in workers], timeout=0.5)
            for n, worker in enumerate(workers):
                if stopping or worker.is_alive():
                    continue
                # A worker died (crash, OOM kill, kill -9): replace it while the others keep
                # serving; give up only if workers keep dying (a crash loop).
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < WORKER_RESTART_WINDOW] + [now]
                if len(restarts) > WORKER_RESTART_LIMIT:
                    failed = True
                    break
                log.warning("worker exited; starting a new one", extra={"code": worker.exitcode})
                workers[n] = new_worker(n)
                workers[n].start()
        for worker in workers:
            if worker.is_alive():
                worker.terminate()  # SIGTERM: the worker drains its calls
        for worker in workers:
            worker.join(config.shutdown_grace + 10)
            if worker.is_alive():
                worker.kill()
                worker.join()
        if failed:
            log.error(
                "workers keep exiting; stopped the others", extra={"codes": [w.exitcode for w in workers]}
            )
            return 1
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if metrics_dir is not None:
            metrics_dir.cleanup()
