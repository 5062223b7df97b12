"""Runs one chaos run from start to verdict, and always cleans up after itself."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from chaos import config as cfg
from chaos.checks import OutboxState, Verdict, outbox_state, verify
from chaos.faults import FaultInjector, decode_broker_message
from chaos.load import (
    LoadPlan,
    Pusher,
    build_plan,
    configure_event_sets,
    phone_national,
    register_with_simulator,
)
from chaos.pii import PiiScanner
from chaos.processes import CeleryProcess
from chaos.report import machine, out, progress, render, write_json
from chaos.services import (
    ChaosDatabase,
    PrivateCluster,
    PrivatePgBouncer,
    PrivateRedis,
    RabbitQueue,
    ServiceUnavailable,
    on_amqp,
    pgbouncer_binary,
)
from chaos.simulator import start_simulator

log = logging.getLogger("chaos.harness")

EXIT_PASS, EXIT_FAIL, EXIT_CANNOT_RUN = 0, 1, 2
PROGRESS_EVERY_SECONDS = 10.0
# After the tail, faults go on (at most this long) until every kind was injected once.
MAX_EXTRA_FAULT_SECONDS = 90.0


class Harness:
    def __init__(self, config: cfg.RunConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.run_id = secrets.token_hex(4)
        self.tmp = Path(tempfile.mkdtemp(prefix=f"postback-chaos-{self.run_id}-"))
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        self.record_path = self.tmp / "simulator-received.jsonl"
        # Without --pg-admin-url: a cluster of the run's own (created in _setup).
        self.cluster: PrivateCluster | None = None
        self.database = ChaosDatabase(
            config.pg_admin_url or "postgresql://unset/postgres", f"postback_chaos_{self.run_id}"
        )
        self.redis: PrivateRedis | None = None
        # --broker-url amqp://...: the run's own quorum queue there instead of a redis-server.
        self.rabbit: RabbitQueue | None = None
        self.rabbit_version = "?"
        self.rabbit_left_in_queue: int | None = None
        self.pgbouncer: PrivatePgBouncer | None = None
        self.pgbouncer_note = ""
        self.simulator: Any = None
        self.workers: list[CeleryProcess] = []
        self.beat: CeleryProcess | None = None
        self.injector: FaultInjector | None = None
        self.pusher: Pusher | None = None
        self.stop = threading.Event()
        self.plan: LoadPlan | None = None
        self.scanner: PiiScanner | None = None
        self.queue = f"postback-chaos-{self.run_id}"
        self.started = time.monotonic()
        self.quiet_at: float | None = None
        self.drained_at: float | None = None
        self.last_state: OutboxState | None = None

    # --- the run ---------------------------------------------------------------------------

    def run(self) -> int:
        verdict: Verdict | None = None
        try:
            self._setup()
            self._inject_faults_under_load()
            self._drain()
            verdict = self._verify()
            return EXIT_PASS if verdict.passed else EXIT_FAIL
        finally:
            try:
                if verdict is not None:
                    self._report(verdict)
            finally:
                self._cleanup()

    def _setup(self) -> None:
        logging.basicConfig(
            filename=self.logs / "harness.log",
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            force=True,
        )
        progress(
            f"chaos run {self.run_id}: mode={self.config.mode} triggers="
            f"{self.config.triggers} seed={self.config.seed} tmp={self.tmp}"
        )
        if on_amqp(self.config.broker_url):
            assert self.config.broker_url is not None
            rabbit = RabbitQueue(self.config.broker_url, self.queue)
            self.rabbit_version = rabbit.server_version()  # ServiceUnavailable if down
            self.rabbit = rabbit  # from here on, the cleanup deletes the run's queue
            progress(
                f"  RabbitMQ {self.rabbit_version} at {self.rabbit.safe_url}, queue {self.queue}"
            )
        else:
            if self.config.broker_url:
                # The machine's shared Redis is never restarted: a private one stands in.
                progress(f"  {self.config.broker_url}: a redis URL means the private redis-server")
            self.redis = PrivateRedis(self.tmp / "redis", self.logs / "redis.log")
        self._choose_pgbouncer()
        if self.config.pg_admin_url is None:
            self.cluster = PrivateCluster(self.tmp / "postgres", self.logs / "postgres.log")
            self.cluster.init()
            self.cluster.start()
            self.database = ChaosDatabase(self.cluster.admin_url, self.database.name)
            progress(f"  private PostgreSQL cluster on 127.0.0.1:{self.cluster.port}")
        self.database.create()
        database_url = self.database.sqlalchemy_url
        if self.pgbouncer_note == "" and self.cluster is not None:
            self.pgbouncer = PrivatePgBouncer(
                self.tmp / "pgbouncer", self.logs / "pgbouncer.log", self.cluster.port
            )
            self.pgbouncer.start()
            database_url = self.pgbouncer.url_for(self.database.name)
            progress(f"  private PgBouncer (transaction mode) on 127.0.0.1:{self.pgbouncer.port}")
        if self.redis is not None:
            self.redis.start()
        broker_url = self.redis.url if self.redis is not None else str(self.config.broker_url)
        self.simulator, _ = start_simulator(self.config.seed, self.record_path)
        env = cfg.worker_settings(
            database_url=database_url,
            pooler="transaction" if self.pgbouncer is not None else "none",
            broker_url=broker_url,
            simulator_url=self.simulator.url,
            data_dir=self.tmp / "data",
            queue=self.queue,
            token_key=_fernet_key(),
        )
        (self.tmp / "data").mkdir()
        self._apply_env_here(env)
        self.database.migrate()
        set_ids = configure_event_sets()
        register_with_simulator(self.simulator.state)
        self.plan = build_plan(self.config.triggers, self.rng)
        self.plan.resolve_expectations(set_ids)
        self.scanner = PiiScanner.for_numbers(
            phone_national(n) for n in {t.lead_number for t in self.plan.triggers}
        )
        child_env = cfg.clean_environment({**env, "PYTHONPATH": str(self.config.repo_root)})
        self.workers = [
            CeleryProcess(
                f"chaos-w{i}",
                "worker",
                child_env,
                self.tmp,
                self.logs / f"worker-{i}.log",
                self.config.concurrency,
            )
            for i in range(self.config.workers)
        ]
        self.beat = CeleryProcess("chaos-beat", "beat", child_env, self.tmp, self.logs / "beat.log")
        for process in [*self.workers, self.beat]:
            process.start()
        for process in [*self.workers, self.beat]:
            process.wait_ready()
        progress(
            f"  ready in {time.monotonic() - self.started:.1f} s: {len(self.plan.triggers)} "
            f"triggers for {self.plan.leads} leads -> {len(self.plan.expected)} events "
            f"+ {self.plan.expected_unmapped} unmapped"
        )

    def _choose_pgbouncer(self) -> None:
        """Sets `pgbouncer_note` to why there is no PgBouncer, or "" when there is one.

        On by default with the private cluster when pgbouncer is installed (a production
        topology); `--pgbouncer` requires it, `--no-pgbouncer` leaves it out. Never in front of
        an external server (its authentication is not ours to configure)."""
        wanted = self.config.pgbouncer
        if wanted is False:
            self.pgbouncer_note = "left out (--no-pgbouncer)"
        elif self.config.pg_admin_url is not None:
            if wanted:
                raise ServiceUnavailable("--pgbouncer needs the private cluster")
            self.pgbouncer_note = "left out: only in front of the private cluster"
        elif pgbouncer_binary() is None:
            if wanted:
                raise ServiceUnavailable("--pgbouncer: no pgbouncer binary on PATH or in /usr/sbin")
            self.pgbouncer_note = "left out: no pgbouncer binary installed"

    def _apply_env_here(self, env: dict[str, str]) -> None:
        """This process pushes through the same settings (private Redis, chaos database)."""
        for name in cfg.setting_env_names():
            os.environ.pop(name, None)
        os.environ.update(env)
        from crm_postback.core.settings import get_settings, reset_settings_cache
        from models.db import reset_engine
        from worker.app import app, apply_settings

        reset_settings_cache()
        reset_engine()
        apply_settings(app, get_settings())

    def _inject_faults_under_load(self) -> None:
        assert self.plan is not None and self.beat is not None
        assert self.scanner is not None
        self.simulator.state.update_faults(
            {
                "http_5xx_rate": cfg.SIM_5XX_RATE,
                "throttle_rate": cfg.SIM_THROTTLE_RATE,
                "slow_rate": cfg.SIM_SLOW_RATE,
                "slow_seconds": cfg.SLOW_SECONDS,
            }
        )
        self.injector = FaultInjector(
            workers=self.workers,
            beat=self.beat,
            redis=self.redis,
            database=self.database,
            cluster=self.cluster,
            pgbouncer=self.pgbouncer,
            broker_note="RabbitMQ: a shared server, never restarted",
            queue=self.queue,
            rng=random.Random(self.rng.random()),
            gap_seconds=self.config.fault_gap_seconds,
            stop=self.stop,
            inspect_broker_text=self.scanner.scan,
            simulator=self.simulator.state,
            slow_rate=cfg.SIM_SLOW_RATE,
        )
        self.pusher = Pusher(
            self.plan.triggers,
            seconds=self.config.push_seconds,
            batch_size=self.config.batch_size,
            rng=random.Random(self.rng.random()),
            stop=threading.Event(),
        )
        load_started = time.monotonic()
        self.injector.start()
        self.pusher.start()
        next_line = time.monotonic() + PROGRESS_EVERY_SECONDS
        tail_ends: float | None = None
        while True:
            time.sleep(0.5)
            now = time.monotonic()
            if tail_ends is None and not self.pusher.is_alive():
                tail_ends = now + self.config.fault_tail_seconds
            if tail_ends is not None and now >= tail_ends:
                if not self.injector.missing_kinds():
                    break
                if now >= tail_ends + MAX_EXTRA_FAULT_SECONDS:
                    break
            if now >= next_line:
                self._progress_line("load+faults", load_started)
                next_line = now + PROGRESS_EVERY_SECONDS
        self.stop.set()
        self.injector.join()
        self.simulator.state.update_faults(
            {"http_5xx_rate": 0.0, "throttle_rate": 0.0, "slow_rate": 0.0}
        )
        self.quiet_at = time.monotonic()
        progress(
            f"  faults stopped after {self.quiet_at - load_started:.1f} s: "
            f"{sum(self.injector.record.counts.values())} injected; draining"
        )

    def _drain(self) -> None:
        assert self.quiet_at is not None and self.plan is not None
        deadline = self.quiet_at + self.config.drain_timeout_seconds
        next_line = time.monotonic() + PROGRESS_EVERY_SECONDS
        while time.monotonic() < deadline:
            if self.injector is not None:
                self.injector.ensure_running()  # the supervisor's job: restart what died
            with contextlib.suppress(Exception):
                self.last_state = outbox_state(self.database)
                if self.last_state.drained(len(self.plan.triggers)):
                    self.drained_at = time.monotonic()
                    break
            if time.monotonic() >= next_line:
                self._progress_line("drain", self.quiet_at)
                next_line = time.monotonic() + PROGRESS_EVERY_SECONDS
            time.sleep(0.5)
        if self.drained_at is None:
            progress(f"  NOT drained {self.config.drain_timeout_seconds:.0f} s after the faults")
        else:
            progress(f"  drained {self.drained_at - self.quiet_at:.1f} s after the last fault")
        # A request the simulator was holding (slow fault) may still land as a duplicate.
        time.sleep(max(0.0, self.quiet_at + cfg.SLOW_SECONDS + 1.0 - time.monotonic()))
        self._scan_redis()
        for process in [*self.workers, *([self.beat] if self.beat else [])]:
            process.stop()
        self._scan_rabbit()

    def _verify(self) -> Verdict:
        assert self.plan is not None and self.scanner is not None and self.pusher is not None
        for handler in logging.getLogger().handlers:
            handler.flush()  # the harness log is scanned too
        texts = [(f"log {p.name}", p) for p in sorted(self.logs.glob("*.log"))]
        verdict = verify(
            plan=self.plan,
            triggers_pushed=self.pusher.stats.pushed,
            database=self.database,
            record_path=self.record_path,
            scanner=self.scanner,
            texts_to_scan=texts,
        )
        verdict.check(
            "outbox drained (every trigger processed, every postback final)",
            self.drained_at is not None,
            self.last_state.summary() if self.last_state else "no state read",
        )
        if self.pusher.stats.rejected or self.pusher.stats.gave_up:
            verdict.check(
                "every trigger accepted by enqueue_triggers",
                False,
                f"{len(self.pusher.stats.rejected)} rejected (e.g. "
                f"{self.pusher.stats.rejected[:3]}); gave up: {self.pusher.stats.gave_up}",
            )
        injector = self.injector
        if injector is not None:
            missing = injector.missing_kinds()
            left_out = "; ".join(f"{k} ({why})" for k, why in sorted(injector.left_out.items()))
            verdict.check(
                "every fault kind injected at least once",
                not missing,
                (f"not injected: {[f.value for f in missing]}" if missing else "all")
                + (f"; left out in this topology: {left_out}" if left_out else ""),
            )
        if self.cluster is not None:
            record = self.cluster.record
            verdict.check(
                "every postgres SIGKILL was followed by crash recovery (server log)",
                record.crash_recoveries == record.crashes and not record.children_killed_by_us,
                f"{record.crashes} SIGKILLs, {record.crash_recoveries} crash recoveries, "
                f"{record.children_died_by_themselves} backends exited by themselves, "
                f"{record.children_killed_by_us} had to be killed",
            )
        if injector is not None and injector.record.errors:
            verdict.evidence.extend(f"fault error: {e}" for e in injector.record.errors[:10])
        return verdict

    # --- reporting ---------------------------------------------------------------------------

    def _progress_line(self, phase: str, since: float) -> None:
        try:
            state = outbox_state(self.database).summary()
        except Exception as error:
            state = f"database unavailable ({type(error).__name__})"
        stats = self.simulator.state.stats()
        pushed = self.pusher.stats.pushed if self.pusher else 0
        faults = sum(self.injector.record.counts.values()) if self.injector else 0
        progress(
            f"  [{phase} {time.monotonic() - since:5.0f} s] pushed {pushed}, faults {faults}, "
            f"{state}; receiver unique {stats['events_unique']} dup {stats['events_duplicate']}"
        )

    def _scan_rabbit(self) -> None:
        """RabbitMQ: what is left in the run's queue once the workers stopped, looked at with
        basic_get without ack and put back (the queue is deleted at the cleanup anyway)."""
        if self.rabbit is None or self.scanner is None:
            return
        try:
            bodies = self.rabbit.peek()
        except Exception as error:
            progress(f"  could not look into the RabbitMQ queue: {type(error).__name__}: {error}")
            return
        self.rabbit_left_in_queue = len(bodies) // 2  # body + headers per message
        for body in bodies:
            self.scanner.scan(body.decode("utf-8", errors="replace"), "rabbitmq at the end")

    def _scan_redis(self) -> None:
        """Every message still in the broker after the drain (there may be sweeps queued)."""
        if self.redis is None or self.scanner is None or not self.redis.running:
            return

        with contextlib.suppress(Exception):
            client = self.redis.client()
            try:
                for key in client.scan_iter():
                    kind = client.type(key)
                    if kind == b"list":
                        values = client.lrange(key, 0, -1)
                    elif kind == b"hash":
                        values = client.hvals(key)
                    else:
                        continue
                    for value in values:
                        self.scanner.scan(decode_broker_message(value), "redis at the end")
            finally:
                client.close()

    def _report(self, verdict: Verdict) -> None:
        from celery import __version__ as celery_version

        injector = self.injector
        record = injector.record if injector else None
        result: dict[str, Any] = {
            "mode": self.config.mode,
            "seed": self.config.seed,
            "passed": verdict.passed,
            "machine": machine(),
            "versions": {
                "postgres": _safe(self.database.server_version),
                "redis": _safe(self.redis.version) if self.redis else "-",
                "rabbitmq": self.rabbit_version if self.rabbit else "-",
                "celery": celery_version,
            },
            "workers": self.config.workers,
            "concurrency": self.config.concurrency,
            "redis_port": self.redis.port if self.redis else None,
            "broker": self._broker_description(),
            "pgbouncer": (
                {
                    "used": True,
                    "port": self.pgbouncer.port,
                    "version": _safe(self.pgbouncer.version),
                    "pool_mode": "transaction",
                    "default_pool_size": self.pgbouncer.POOL_SIZE,
                    "database_pooler": "transaction",
                    **asdict(self.pgbouncer.record),
                }
                if self.pgbouncer is not None
                else {"used": False, "note": self.pgbouncer_note}
            ),
            "database": self.database.name,
            "postgres_server": (
                {
                    "kind": "private cluster",
                    "port": self.cluster.port,
                    **asdict(self.cluster.record),
                }
                if self.cluster is not None
                else {"kind": "external", "url": _without_password(self.database.admin_url)}
            ),
            "wall_seconds": time.monotonic() - self.started,
            "drain_seconds": (
                self.drained_at - self.quiet_at
                if self.drained_at is not None and self.quiet_at is not None
                else None
            ),
            "simulator_faults": {
                "http_5xx_rate": cfg.SIM_5XX_RATE,
                "throttle_rate_40100": cfg.SIM_THROTTLE_RATE,
                "slow_rate": cfg.SIM_SLOW_RATE,
                "slow_seconds": cfg.SLOW_SECONDS,
                "worker_read_timeout_seconds": cfg.HTTP_READ_TIMEOUT_SECONDS,
            },
            "simulator": (
                {
                    **self.simulator.state.stats(),
                    "requests_held_past_timeout": self.simulator.state.held_requests,
                }
                if self.simulator
                else {}
            ),
            "push": asdict(self.pusher.stats) if self.pusher else {},
            "faults": {
                "counts": dict(record.counts) if record else {},
                "pg_backends_terminated": record.pg_backends_terminated if record else 0,
                "restarts_after_unexpected_exit": (
                    record.restarts_after_unexpected_exit if record else 0
                ),
                "broker_messages_sampled": record.broker_messages_sampled if record else 0,
                "errors": record.errors if record else [],
                "left_out": dict(injector.left_out) if injector else {},
                "worker_starts": {p.name: p.starts for p in self.workers},
            },
            "config": {
                "triggers": self.config.triggers,
                "push_seconds": self.config.push_seconds,
                "fault_tail_seconds": self.config.fault_tail_seconds,
                "fault_gap_seconds": self.config.fault_gap_seconds,
                "retry_ladder_seconds": cfg.RETRY_LADDER_SECONDS,
                "dispatch_lease_seconds": cfg.DISPATCH_LEASE_SECONDS,
                "stale_trigger_seconds": cfg.STALE_TRIGGER_SECONDS,
                "sweep_interval_seconds": cfg.SWEEP_INTERVAL_SECONDS,
                "product_settings": _product_settings(),
            },
        }
        out(render(result, verdict))
        if not verdict.passed:
            for path in sorted(self.logs.glob("*.log")):
                lines = path.read_text(errors="replace").splitlines()[-25:]
                out(f"\n--- tail of {path.name} ---\n" + "\n".join(lines) + "\n")
        if self.config.json_path is not None:
            write_json(self.config.json_path, result, verdict)

    def _broker_description(self) -> dict[str, Any]:
        if self.rabbit is not None:
            return {
                "kind": "rabbitmq",
                "url": self.rabbit.safe_url,
                "version": self.rabbit_version,
                "queue": self.queue,
                "queue_type": "quorum",
                "restarted": False,
                "note": "a shared server: never restarted (the broker-restart fault is left "
                "out); no broker sample during the run; what was left in the queue at the end "
                "was looked at (basic_get without ack, put back) and scanned for raw PII",
                "left_in_queue_at_the_end": self.rabbit_left_in_queue,
            }
        return {
            "kind": "private redis-server",
            "port": self.redis.port if self.redis else None,
            "version": _safe(self.redis.version) if self.redis else "?",
        }

    # --- cleanup -----------------------------------------------------------------------------

    def _cleanup(self) -> None:
        if threading.current_thread() is threading.main_thread():
            # A second Ctrl-C must not cut the cleanup short (processes, database, temp dir).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.stop.set()
        if self.pusher is not None:
            self.pusher.stop_event.set()
        for thread in (self.injector, self.pusher):
            if thread is not None and thread.is_alive():
                thread.join(timeout=30)
        for process in [*self.workers, *([self.beat] if self.beat else [])]:
            with contextlib.suppress(Exception):
                process.kill()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.kill()
        if self.rabbit is not None:
            try:  # the run's quorum queue and exchange must not pile up on the shared server
                self.rabbit.delete()
            except Exception as error:
                progress(f"could not delete RabbitMQ queue {self.queue}: {error}")
        if self.pgbouncer is not None:
            with contextlib.suppress(Exception):
                self.pgbouncer.kill()
        if self.simulator is not None:
            with contextlib.suppress(Exception):
                self.simulator.stop()
        with contextlib.suppress(Exception):
            from models.db import reset_engine

            reset_engine()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.cleanup(remove=not self.config.keep_tmp)  # the database with it
        else:
            try:
                self.database.drop()
            except Exception as error:
                progress(f"could not drop database {self.database.name}: {error}")
        if self.config.keep_tmp:
            progress(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _product_settings() -> dict[str, Any]:
    """The settings the run used, as the product read them (tokens and URLs left out)."""
    from crm_postback.core.settings import get_settings

    hidden = ("token", "url", "key", "dir")
    return {
        name: value
        for name, value in get_settings().model_dump().items()
        if not any(word in name for word in hidden)
    }


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _safe(getter: Any) -> str:
    try:
        return str(getter())
    except Exception:
        return "?"
