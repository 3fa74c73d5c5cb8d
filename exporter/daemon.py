"""``portqry-exporter``: the daemon.  Probes targets on a schedule and serves ``/metrics`` (:mod:`exporter.http`).

A reload (SIGHUP or ``POST /-/reload``) reads and validates the new file in a worker thread (the event loop
keeps probing and serving) and applies it on the loop; a bad file is refused with a log line and the last good
config keeps running.  It re-reads the web config (``--web.config.file``: :mod:`exporter.webconfig`) too, with
the same rule.  SIGTERM/SIGINT stop it promptly.  The signal handlers are installed first thing in
:func:`main`, before the heavy imports and the config: a SIGHUP during start-up (``systemctl reload`` right
after ``start``) is a reload once the loop runs, never the default action that kills the process.

Exit codes: 0 clean stop (or ``--config.check`` passed), 1 bad config at start, 3 usage error,
4 the listen address cannot be bound.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from exporter import __version__, version_text
from exporter.logs import configure, get_logger

if TYPE_CHECKING:  # the heavy modules are imported in main(), after the signal handlers are installed
    from exporter.config import ExporterSection, Settings
    from exporter.errors import ConfigError
    from exporter.plan import DomainPlan, TargetPlan
    from exporter.webconfig import WebState

    #: A reload's work off the loop: the validated config and its expansion, or why it was refused.
    Loaded = tuple[Settings, list[TargetPlan], list[DomainPlan]] | ConfigError

log = get_logger(component="daemon")

#: ``[exporter]`` keys that a reload reads but that take effect at restart: a reload names those that changed.
RESTART_ONLY = (
    "listen_address",
    "concurrency",
    "max_connections",
    "shard",
    "histograms",
    "histogram_buckets",
    "status_history",
    "log_level",
    "log_format",
)


class StartSignals:
    """SIGHUP, SIGTERM and SIGINT from the start of :func:`main` until :meth:`Daemon.run` hands them to the loop.

    SIGHUP's default action ends the process; here it is remembered (:attr:`reload_pending`) and becomes one
    reload once the loop runs.  SIGTERM and SIGINT stop the start-up at once (exit 0, as a stop later does).
    """

    SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.reload_pending = False
        self._saved: dict[int, Any] = {}

    def install(self) -> None:
        """Take over the three signals (main thread only), keeping the handlers they had for :meth:`restore`."""
        self._saved = {sig: signal.getsignal(sig) for sig in self.SIGNALS}
        signal.signal(signal.SIGHUP, self._hup)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def restore(self) -> None:
        """Give the signals back their handlers from before :meth:`install` (``main()`` called in process)."""
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)

    def _hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload_pending = True

    @staticmethod
    def _stop(_signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(0)


class Daemon:
    """The running exporter: config, engine, scheduler, store and HTTP server.

    Args:
        config_path: the TOML file (re-read on reload).
        settings: its already validated contents.
        in_file: the file's ``[exporter]`` section as read, before the command line's overrides
            (``--web.listen-address``, ``--web.max-connections``, ``--shard``), so that a reload does not warn
            about a change that is only an override; default ``settings.exporter``.
        web: the web config (TLS, basic auth, headers); default none.
        enable_lifecycle: ``--web.enable-lifecycle``: ``/-/reload`` from any client, not only loopback.
    """

    def __init__(
        self,
        config_path: str,
        settings: Settings,
        in_file: ExporterSection | None = None,
        *,
        web: WebState | None = None,
        enable_lifecycle: bool = False,
    ) -> None:
        from prometheus_client import CollectorRegistry
        from prometheus_client.process_collector import ProcessCollector

        from exporter.collector import ExporterStatus, PortqryCollector
        from exporter.engine import Engine
        from exporter.http_limits import ConnectionLimits
        from exporter.plan import domain_plans, plan
        from exporter.scheduler import Scheduler
        from exporter.shard import UNSHARDED, parse_shard
        from exporter.store import ResultStore, duration_buckets
        from exporter.webconfig import WebConfigCollector, WebState

        self.config_path = config_path
        self.settings = settings
        self._restart_only = _restart_only(in_file or settings.exporter)
        self.web = web or WebState()
        self.enable_lifecycle = enable_lifecycle
        self.status = ExporterStatus()
        longest = max(
            [
                t.options.timeout_seconds * max(t.options.tcp_tries, t.options.udp_tries) * 2
                for t in [*plan(settings), *(d.template for d in domain_plans(settings))]
            ]
            or [settings.defaults.timeout_seconds * settings.defaults.tcp_tries * 2]
        )
        buckets = settings.exporter.histogram_buckets or duration_buckets(longest)
        self.store = ResultStore(buckets, settings.exporter.histograms, settings.exporter.status_history)
        self.engine = Engine(
            concurrency=settings.exporter.concurrency,
            udp_pacing_seconds=settings.exporter.udp_pacing_seconds,
            resolver=self._resolver(settings),
            udp_recheck_max=settings.exporter.udp_recheck_max,
            udp_recheck_gap_seconds=settings.exporter.udp_recheck_gap_seconds,
        )
        self.status.shard = parse_shard(settings.exporter.shard) if settings.exporter.shard else UNSHARDED
        self.scheduler = Scheduler(self.engine, self.store, shard=self.status.shard)
        self.engine.on_probe_error = self.scheduler.probe_failed
        self.status.ready = lambda: self.scheduler.ready
        self.status.in_flight = lambda: self.engine.in_flight
        self.status.schedule_lag = self.scheduler.lag
        self.registry = CollectorRegistry()
        self.registry.register(PortqryCollector(self.store, self.status))
        ProcessCollector(registry=self.registry)
        self.registry.register(WebConfigCollector(self.web))
        self.http_limits = ConnectionLimits(settings.exporter.max_connections)
        self.registry.register(self.http_limits)
        from exporter.probe_endpoint import ProbeEndpoint

        self.probe = ProbeEndpoint(self)
        self.registry.register(self.probe.counters)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = asyncio.Event()
        self.start_signals = StartSignals()
        self._reload_lock = asyncio.Lock()
        self._reloads: set[asyncio.Task[tuple[bool, str]]] = set()

    @staticmethod
    def _resolver(settings: Settings) -> Any:
        from exporter.resolve import Resolver

        r = settings.resolver
        return Resolver(r.nameservers, port=r.port, timeout=r.timeout_seconds, prefer=r.prefer)

    def apply(
        self, settings: Settings, plans: list[TargetPlan] | None = None, domains: list[DomainPlan] | None = None
    ) -> None:
        """Make ``settings`` the running config (targets, resolver); listen address changes need a restart.

        ``plans`` and ``domains`` are its expansion when already made (off the loop, by a reload).
        """
        from exporter.plan import domain_plans, plan

        if settings.resolver != self.settings.resolver:
            self.engine.resolver = self._resolver(settings)
        self.engine.udp_pacing_seconds = settings.exporter.udp_pacing_seconds
        self.engine.udp_recheck_max = settings.exporter.udp_recheck_max
        self.engine.udp_recheck_gap_seconds = settings.exporter.udp_recheck_gap_seconds
        self.settings = settings
        plans = plan(settings) if plans is None else plans
        self.scheduler.apply(plans, domain_plans(settings) if domains is None else domains)
        self.status.targets = len(plans)
        self.status.reload_successful = True
        self.status.reload_success_timestamp = time.time()

    def reload(self) -> tuple[bool, str]:
        """Re-read the config file and the web config, here and now (blocking: the loop uses :meth:`reload_async`).

        Returns:
            ``(ok, message)``: ok when both were good; one line for each.
        """
        ok, message = self._apply_loaded(self._load())
        web_ok, web_message = self.web.reload()
        return ok and web_ok, "\n".join(m for m in (message, web_message) if m)

    def _load(self) -> Loaded:
        """The config file read, validated and expanded (blocking, CPU-bound: a worker thread's job)."""
        from exporter.config import load_config
        from exporter.errors import ConfigError
        from exporter.plan import domain_plans, plan

        try:
            settings = load_config(self.config_path)
            return settings, plan(settings), domain_plans(settings)
        except ConfigError as exc:
            return exc

    def _apply_loaded(
        self, loaded: tuple[Settings, list[TargetPlan], list[DomainPlan]] | Exception
    ) -> tuple[bool, str]:
        if isinstance(loaded, Exception):
            self.status.reload_successful = False
            log.error("reload refused, keeping the last good config", error=str(loaded))
            return False, str(loaded)
        settings, plans, domains = loaded
        restart_only = _restart_only(settings.exporter)
        changed = [key for key in RESTART_ONLY if restart_only[key] != self._restart_only[key]]
        for key in changed:
            log.warning(f"{key} changes take effect at restart", **{key: restart_only[key]})
        self._restart_only = restart_only
        self.apply(settings, plans, domains)
        log.info("config reloaded", path=self.config_path, targets=self.status.targets)
        if changed:
            return True, f"config reloaded; [exporter] {', '.join(changed)}: changes take effect at restart"
        return True, "config reloaded"

    def sd_groups(self, *, domain: str | None = None, site: str | None = None) -> list[dict[str, Any]]:
        """Prometheus HTTP SD target groups: one per discovered DC and configured target.

        ``targets`` holds the host name (no port); labels ``__meta_portqry_domain``, ``__meta_portqry_site`` and
        ``__meta_portqry_roles`` (``,pdc,gc,kdc,``: the DS_FLAG roles between commas, as Prometheus' own SD
        tags are).  ``domain`` and ``site`` filter (exact, case-insensitive).

        See https://prometheus.io/docs/prometheus/latest/http_sd/.
        """
        from exporter.plan import domain_plans

        rows: list[tuple[str, str, str, frozenset[str]]] = []
        for target in self.scheduler.static_plans.values():
            rows.append((target.host, target.domain, target.site, frozenset()))
        for plan_ in domain_plans(self.settings):
            for dc in self.scheduler.domain_controllers(plan_.name):
                rows.append((dc.host, plan_.name, dc.site, dc.roles))
        groups = []
        for host, dom, dc_site, roles in rows:
            if domain is not None and dom.lower() != domain.lower().rstrip("."):
                continue
            if site is not None and dc_site.lower() != site.lower():
                continue
            tags = "," + ",".join(sorted(roles)) + "," if roles else ""
            meta = {"__meta_portqry_domain": dom, "__meta_portqry_site": dc_site, "__meta_portqry_roles": tags}
            groups.append({"targets": [host], "labels": meta})
        return groups

    @property
    def ready(self) -> bool:
        """Every target finished a round and every domain its first discovery (``/-/ready``)."""
        return self.scheduler.ready

    async def reload_async(self) -> tuple[bool, str]:
        """:meth:`reload` for SIGHUP and ``POST /-/reload``: the files are read and parsed in worker threads and
        the result applied on the loop, one reload at a time (a second waits for the first)."""
        async with self._reload_lock:
            loaded = await asyncio.to_thread(self._load)
            ok, message = self._apply_loaded(loaded)
            web_ok, web_message = await asyncio.to_thread(self.web.reload)
        return ok and web_ok, "\n".join(m for m in (message, web_message) if m)

    def _on_sighup(self) -> None:
        task = asyncio.ensure_future(self.reload_async())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT.  Returns the exit code."""
        from exporter.config import parse_listen_address
        from exporter.http import build_app, serve

        self.loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        self.loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        host, port = parse_listen_address(self.settings.exporter.listen_address)
        try:
            app = build_app(
                self,
                extra_routes={"/probe": self.probe.handle},
                webstate=self.web,
                enable_lifecycle=self.enable_lifecycle,
                limits=self.http_limits,
            )
            runner, bound = await serve(app, host, port, ssl_context=self.web.listen_context())
        except OSError as exc:
            why = os.strerror(exc.errno) if exc.errno else str(exc)  # asyncio's strerror repeats the address
            log.error("cannot listen", listen_address=self.settings.exporter.listen_address, error=why)
            print(f"portqry-exporter: cannot listen on {self.settings.exporter.listen_address}: {why}", file=sys.stderr)
            return 4
        self._check_descriptors()
        self.apply(self.settings)
        shown = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        log.info(
            "portqry-exporter started",
            version=__version__,
            listen_address=shown,
            scheme=self.web.scheme,
            config=self.config_path,
            web_config=self.web.path or None,
            targets=self.status.targets,
        )
        if self.start_signals.reload_pending:  # a SIGHUP during start-up, after the config was read
            self._on_sighup()
        await self.stopping.wait()
        log.info("stopping")
        for task in self._reloads:
            task.cancel()
        await self.scheduler.stop(timeout=3.0)
        await runner.cleanup()
        log.info("stopped")
        return 0

    def _check_descriptors(self) -> None:
        from exporter.http_limits import fit_descriptor_limit

        budget = fit_descriptor_limit(self.http_limits.max_connections, self.engine.concurrency)
        if not budget.fits:
            log.warning(
                "descriptors may run out: lower --web.max-connections or [exporter] concurrency, or raise the limit",
                rlimit_nofile=budget.limit,
                needed=budget.needed,
                max_connections=self.http_limits.max_connections,
                concurrency=self.engine.concurrency,
            )


class _ArgParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(3, f"{self.prog}: error: {message}\n")


def _restart_only(section: ExporterSection) -> dict[str, object]:
    return {key: getattr(section, key) for key in RESTART_ONLY}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``portqry-exporter``; returns the exit code.

    The signal handlers come first (:class:`StartSignals`), then the heavy imports.
    """
    start_signals = StartSignals()
    start_signals.install()
    try:
        return _main(argv, start_signals)
    finally:
        start_signals.restore()


def _main(argv: Sequence[str] | None, start_signals: StartSignals) -> int:
    from exporter.config import find_config, load_config, parse_listen_address
    from exporter.errors import ConfigError
    from exporter.shard import parse_shard
    from exporter.webconfig import WebState, load_web_config

    parser = _ArgParser(prog="portqry-exporter", description="PortQry as a Prometheus exporter.")
    parser.add_argument(
        "--config",
        "--config.file",
        dest="config",
        help="TOML file (default: ./config.example.toml, then /etc/portqry-exporter/config.toml)",
    )
    parser.add_argument("--config.check", dest="check", action="store_true", help="validate the config and exit")
    parser.add_argument("--web.listen-address", dest="listen", help="override [exporter] listen_address")
    parser.add_argument(
        "--web.max-connections",
        dest="max_connections",
        type=int,
        metavar="N",
        help="override [exporter] max_connections: HTTP connections open at once (default 512)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config",
        metavar="FILE",
        help="TLS, basic auth and headers, in Prometheus' exporter-toolkit web config format (re-read on reload)",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="allow POST/PUT /-/reload from any client (without it: loopback clients only)",
    )
    parser.add_argument("--shard", metavar="I/N", help="override [exporter] shard: the names hashmod N sends to I")
    parser.add_argument("--log.level", dest="log_level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log.format", dest="log_format", choices=["auto", "json", "console"])
    parser.add_argument(
        "--version", action="store_true", help="print the versions (ours, Python's, libraries') and exit"
    )
    args = parser.parse_args(argv)
    if args.version:  # argparse's version action would re-wrap the lines
        sys.stdout.write(version_text("portqry-exporter"))
        return 0

    path = find_config(args.config)
    start_signals.reload_pending = False  # the file is about to be read: a SIGHUP from now on is a reload
    try:
        settings = load_config(path)
    except ConfigError as exc:
        for line in exc.lines:  # one line per error
            print(f"portqry-exporter: config error: {line}", file=sys.stderr)
        return 1
    in_file = settings.exporter
    if args.shard is not None:
        try:
            parse_shard(args.shard)
        except ValueError as exc:
            print(f"portqry-exporter: --shard: {exc}", file=sys.stderr)
            return 3
        settings = settings.model_copy(update={"exporter": settings.exporter.model_copy(update={"shard": args.shard})})
    if args.max_connections is not None:
        if not 1 <= args.max_connections <= 65536:
            print("portqry-exporter: --web.max-connections: must be 1-65536", file=sys.stderr)
            return 3
        settings = settings.model_copy(
            update={"exporter": settings.exporter.model_copy(update={"max_connections": args.max_connections})}
        )
    web = WebState()
    if args.web_config:
        try:
            web = WebState(load_web_config(args.web_config))
        except ConfigError as exc:
            print(f"portqry-exporter: web config error: {exc}", file=sys.stderr)
            return 1
    if args.check:
        print(f"{path}: OK ({len(settings.targets)} targets)")
        if args.web_config:
            print(f"{args.web_config}: OK ({web.scheme}, {len(web.config.users)} basic auth users)")
        return 0
    if args.listen:
        try:
            parse_listen_address(args.listen)
        except ValueError as exc:
            print(f"portqry-exporter: --web.listen-address: {exc}", file=sys.stderr)
            return 3
        settings = settings.model_copy(
            update={"exporter": settings.exporter.model_copy(update={"listen_address": args.listen})}
        )
    configure(args.log_level or settings.exporter.log_level, args.log_format or settings.exporter.log_format)
    daemon = Daemon(path, settings, in_file, web=web, enable_lifecycle=args.enable_lifecycle)
    daemon.start_signals = start_signals
    try:
        return asyncio.run(daemon.run())
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130


if __name__ == "__main__":
    sys.exit(main())
