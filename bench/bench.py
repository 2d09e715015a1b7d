"""make bench: measures a release build of stagepass against the real services.

Run by scripts/bench (which installs the tools, builds the release binary and the
load client, and raises the open-file limit) with the LiveKit Python SDK's venv.
Everything it starts is its own: a database `stagepass_bench` (dropped and created
again), a livekit-server and an s3s-fs on free ports, the app itself, and for the
token phase the Express peer (bench/peers/express); all of it is stopped when the
run ends, however it ends.

Phases, each repeated (3 times unless BENCH_QUICK=1):
  token      POST /s/{id}/token (session, CSRF, the access rule, minting) from oha,
             stagepass and the Express peer alternating within each repetition:
             the most each answers (no rate limit, 32 connections), then fixed
             rates (latency-corrected); and pgbench running the endpoint's own
             queries (bench/token.sql): what the database alone can answer
  watch      GET /s/{id} (signed in, with a grant): the most it answers, then the
             same fixed rates
  storm      2,000 distinct viewers each asking for a token, spread over 10 s
  fanout     one viewer posts chat messages while N viewers hold the SSE stream
             (a fresh app process per run, for its memory)
  media      1 publisher (synthetic video + audio) and a growing number of
             subscribers until the machine no longer holds the frame rate
  glass      glass-to-glass latency: the publisher stamps each frame with its
             capture time, Chromium on the watch page reads it back as the frame
             is shown (bench/glass.py, bench/glass.js); again under 2 % loss and
             100 ms RTT where the kernel has netem
  recording  one built-in recording of the publisher's stream, started and stopped
             through the owner's endpoints: the app's CPU and RSS without and with it
             (3 x 30 s), then one recording held until two 5 MiB upload parts went up
             (BENCH_RECORDING_LONG_S caps it; 0 skips it, the default with BENCH_QUICK)
  enforce    50 viewers in the LiveKit room (Python SDK) whose grants end 100 ms
             apart: time from each grant's end until LiveKit no longer lists them
  soak       a fresh app process, 10 minutes of mixed load (pages, tokens, chat,
             SSE streams opened and closed, uploads, oversized and malformed
             requests, failed sign-ins), then idle: RSS after vs idle (bench/soak.py)

Writes target/bench/report.json and target/bench/report.md.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import ctypes
import io
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import logging

import aiohttp
from livekit import api, rtc

REPO = Path(__file__).resolve().parent.parent
# Another bench world already running from this tree (it writes its logs, its
# livekit.yaml and its session files here too): BENCH_OUT=target/bench-mine.
OUT = Path(os.environ.get("BENCH_OUT", REPO / "target" / "bench")).resolve()
TOOLS = Path(os.environ.get("STAGEPASS_TOOLS", "/root/.cache/stagepass"))
APP_BIN = Path(os.environ.get("BENCH_APP_BIN", OUT / "stagepass"))
CLIENT_BIN = Path(os.environ.get("BENCH_CLIENT_BIN", OUT / "stagepass-bench"))
OHA = TOOLS / "bin" / "oha"
# The token endpoint in Node.js (README.md there), run on the same database.
PEER_DIR = REPO / "bench" / "peers" / "express"
PEER_PACKAGES = ("express", "livekit-server-sdk", "pg")
TOKEN_SQL = REPO / "bench" / "token.sql"
LIVEKIT_SERVER = TOOLS / "bin" / "livekit-server"
S3S_FS = TOOLS / "bin" / "s3s-fs"
PG_BASE = os.environ.get("BENCH_PG_BASE", "postgres://stagepass:stagepass@127.0.0.1:5432")
# Another worktree's bench on the same Postgres: BENCH_DB=stagepass_bench_mine.
DB_NAME = os.environ.get("BENCH_DB", "stagepass_bench")
QUICK = os.environ.get("BENCH_QUICK") == "1"
# For working on the bench: BENCH_ONLY=media,enforcement runs only those phases.
ONLY = {p for p in os.environ.get("BENCH_ONLY", "").split(",") if p}

GOALS = {
    "token_p99_ms_at_2000": 5.0,
    # The token endpoint's most requests a second, over the Express peer's and over
    # what the database alone answers of its queries (pgbench, bench/token.sql).
    "token_max_over_peer": 4.0,
    "token_max_over_db": 1 / 3,
    # The watch page: this many requests a second, with p99 at most watch_p99_ms.
    "watch_rps": 2000,
    "watch_p99_ms": 10.0,
    "fanout_p99_ms_at_10000": 100.0,
    "sse_bytes_per_subscriber": 8 * 1024,
    "enforcement_p99_s": 2.0,
    "recording_cpu_pct": 5.0,  # of one core
    "recording_rss_mib": 20.0,
    "soak_rss_ratio": 2.0,  # RSS after the soak and 30 s idle, over idle RSS
    "glass_p95_ms": 250.0,  # glass to glass on loopback
}


class Plan:
    """How much of everything; the quick plan is for working on the bench itself."""

    def __init__(self, quick: bool):
        self.quick = quick
        self.reps = 1 if quick else 3
        self.rates = [500, 1000, 2000]
        self.http_seconds = 3 if quick else 10
        self.warmup_seconds = 2 if quick else 3
        self.oha_connections = 100
        # The most requests a second (no rate limit): fewer connections, so that
        # the figure is the server's, not a queue of 100 requests in front of it.
        self.max_connections = 32
        # pgbench's clients (as many as the app's pool) and threads (one a core).
        self.pgbench_clients = 16
        self.pgbench_threads = 2
        self.storm_n = 2000
        self.storm_within_ms = 10_000
        self.fanout_ns = [1000] if quick else [1000, 5000, 10_000]
        self.fanout_messages = 3 if quick else 5
        # The chat allows everyone 5 messages per 10 s: one every 2.2 s stays under it.
        self.fanout_interval_ms = 2200
        # Posting starts 2 s + this after the last subscriber connected: the
        # subscribers' first database reads are over, and their backstop access
        # re-checks (at a random moment of the first chat::RECHECK_BACKSTOP,
        # then one each per period) fall among the messages, as they would in a
        # chat that has been open a while.
        self.fanout_wait_ms = 6000
        # For working on the bench: BENCH_FANOUT_NS=10000 BENCH_FANOUT_WAIT_MS=0.
        if os.environ.get("BENCH_FANOUT_NS"):
            self.fanout_ns = [int(n) for n in os.environ["BENCH_FANOUT_NS"].split(",")]
        self.fanout_wait_ms = int(os.environ.get("BENCH_FANOUT_WAIT_MS", self.fanout_wait_ms))
        self.enforce_viewers = 10 if quick else 50
        self.enforce_spacing_ms = 100
        self.media_steps = [1, 5] if quick else [1, 5, 10, 20, 40, 60, 80, 100, 125, 150, 200]
        self.media_window_s = 5 if quick else 10
        self.media_budget_s = 60 if quick else 360
        self.width, self.height, self.fps = 640, 360, 30
        # Glass to glass: one window of frames on the watch page (and one under netem).
        self.glass_window_s = 10 if quick else 30
        # One built-in recording: the app's CPU and RSS over a window without it and
        # one with it (after the recorder has joined and written for a few seconds).
        self.recording_window_s = 10 if quick else 30
        self.recording_warmup_s = 5
        # Then one long recording, held until the upload has sent two 5 MiB parts
        # (part 1 stays in memory until the end, for its final header) or this many
        # seconds: the 30 s windows end before the first part fills. 0: skipped.
        self.recording_long_max_s = int(os.environ.get("BENCH_RECORDING_LONG_S", 0 if quick else 300))

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items()}


# ---- output -------------------------------------------------------------------------


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def note(msg: str) -> None:
    print(f"    {msg}", flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def pct(xs, q):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    rank = min(len(xs), max(1, int(-(-q * len(xs) // 1))))
    return xs[rank - 1]


# ---- processes ----------------------------------------------------------------------

_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: the child gets SIGKILL if this driver dies without cleaning up.
    _libc.prctl(1, signal.SIGKILL)


class Processes:
    """What this run started, and only that; stopped in reverse order."""

    def __init__(self):
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list, env: dict | None = None, **kw) -> subprocess.Popen:
        log = open(OUT / f"{name}.log", "ab")
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", log)
        kw.setdefault("stderr", log if kw["stdout"] is log else subprocess.STDOUT)
        p = subprocess.Popen([str(a) for a in argv], env=env, preexec_fn=_die_with_parent, **kw)
        self.procs[name] = p
        return p

    def stop(self, name: str, timeout: float = 15) -> None:
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, name: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    tail = (OUT / f"{name}.log").read_text(errors="replace").splitlines()[-20:]
    raise SystemExit(f"{name} did not come up on port {port}:\n" + "\n".join(tail))


def base_env() -> dict:
    """What a process this run starts inherits: the toolchains' PATH, HOME, the
    locale and the time zone, and nothing else of the caller's environment."""
    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TZ")}


def held_to(cpus: str | None) -> list:
    """The prefix that holds a command to `cpus` (`taskset -c`), or none."""
    return ["taskset", "-c", cpus] if cpus else []


def status_kib(pid: int, field: str) -> int | None:
    """A size from /proc/<pid>/status (VmRSS, VmHWM, …), in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_kib(pid: int) -> int | None:
    return status_kib(pid, "VmRSS")


_TICK = os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int) -> int | None:
    """The most the process has held resident, in KiB."""
    return status_kib(pid, "VmHWM")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    total = sum(parts[:8])
    return (total - idle) / _TICK, total / _TICK


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---- Postgres -------------------------------------------------------------------------


def psql(db: str, sql: str, stdin: str | None = None) -> str:
    r = subprocess.run(
        ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", f"{PG_BASE}/{db}", "-c", sql],
        input=stdin,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise SystemExit(f"psql failed: {r.stderr.strip()}\nSQL: {sql[:500]}")
    return r.stdout.strip()


# ---- the world ------------------------------------------------------------------------


class Viewer:
    def __init__(self, user_id: int, cookie: str, csrf: str):
        self.user_id, self.cookie, self.csrf = user_id, cookie, csrf

    def line(self) -> str:
        return f"{self.cookie} {self.csrf}"


class World:
    """The services, the app and the seeded data of this run."""

    def __init__(self, plan: Plan, procs: Processes):
        self.plan = plan
        self.procs = procs
        self.app_port = free_port()
        self.base = f"http://127.0.0.1:{self.app_port}"
        self.lk_port = free_port()
        self.lk_url = f"http://127.0.0.1:{self.lk_port}"
        self.lk_ws = f"ws://127.0.0.1:{self.lk_port}"
        self.lk_key = "stagepass-bench"
        self.lk_secret = secrets.token_urlsafe(32)
        self.s3_port = free_port()
        self.app: subprocess.Popen | None = None
        self.settings: dict = {}
        # The host's publisher, once a phase needs video in the room (World.publish).
        self.publisher: Publisher | None = None
        # The Express peer, while the token phase runs (World.start_peer).
        self.peer: subprocess.Popen | None = None

    # -- services

    def start_services(self) -> None:
        rtc_tcp, rtc_udp = free_port(), free_port()
        self.rtc_udp = rtc_udp  # the glass phase's netem filters match it
        config = OUT / "livekit.yaml"
        config.write_text(
            f"""# Generated by bench/bench.py for one run.
port: {self.lk_port}
bind_addresses: ["127.0.0.1"]
rtc:
  tcp_port: {rtc_tcp}
  udp_port: {rtc_udp}
  use_external_ip: false
  node_ip: 127.0.0.1
keys:
  {self.lk_key}: {self.lk_secret}
webhook:
  api_key: {self.lk_key}
  urls:
    - {self.base}/webhooks/livekit
logging:
  level: warn
"""
        )
        config.chmod(0o600)
        p = self.procs.start("livekit-server", [LIVEKIT_SERVER, "--config", config])
        wait_port(self.lk_port, p, "livekit-server")
        self.lk_pid = p.pid
        note(f"livekit-server on {self.lk_url} (pid {p.pid})")

        root = OUT / "s3"
        (root / "stagepass").mkdir(parents=True, exist_ok=True)
        p = self.procs.start(
            "s3s-fs",
            [S3S_FS, "--host", "127.0.0.1", "--port", self.s3_port,
             "--access-key", "stagepass-bench", "--secret-key", "stagepass-bench-secret", root],
        )
        wait_port(self.s3_port, p, "s3s-fs")
        note(f"s3s-fs on http://127.0.0.1:{self.s3_port}")

    def app_env(self) -> dict:
        # As an operator would run it on this machine: production log format, the
        # default pool (16 connections for 2 cores), default rate limits and
        # timeouts. Nothing is switched off for the benchmark.
        self.settings = {
            "BIND_ADDR": f"127.0.0.1:{self.app_port}",
            "PUBLIC_URL": self.base,
            "DATABASE_URL": f"{PG_BASE}/{DB_NAME}",
            "DATABASE_POOL_SIZE": "16",
            "LOG_FORMAT": "json",
            "RUST_LOG": "info,stagepass=info,tower_http=info",
            "LIVEKIT_URL": self.lk_url,
            "LIVEKIT_API_KEY": self.lk_key,
            "LIVEKIT_API_SECRET": self.lk_secret,
            "S3_ENDPOINT": f"http://127.0.0.1:{self.s3_port}",
            "S3_BUCKET": "stagepass",
            "S3_ACCESS_KEY_ID": "stagepass-bench",
            "S3_SECRET_ACCESS_KEY": "stagepass-bench-secret",
            "PAYMENTS_PROVIDER": "dev",
            # The default, said here so that the report shows it.
            "RECORDER": "builtin",
        }
        env = base_env()
        env.update(self.settings)
        # For comparing allocator settings: BENCH_APP_ENV="MALLOC_ARENA_MAX=2 ...".
        extra = dict(kv.split("=", 1) for kv in os.environ.get("BENCH_APP_ENV", "").split() if "=" in kv)
        if extra:
            self.settings.update(extra)
            env.update(extra)
        return env

    def migrate(self) -> None:
        psql("postgres", f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        psql("postgres", f'CREATE DATABASE "{DB_NAME}"')
        r = subprocess.run([APP_BIN, "migrate"], env=self.app_env(), capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"stagepass migrate failed:\n{r.stdout}\n{r.stderr}")

    def start_app(self, cpus: str | None = None) -> int:
        """A fresh app process; with `cpus`, held to those CPUs (`taskset -c`)."""
        self.procs.stop("stagepass")
        pin = held_to(cpus)
        p = self.procs.start("stagepass", pin + [APP_BIN, "serve"], env=self.app_env())
        wait_port(self.app_port, p, "stagepass")
        self.app = p
        return p.pid

    def start_proxy(self) -> str:
        """Caddy on a free port in front of the app, HTTP/1.1 to clients and h2c
        to the app (a deployment's shape, without TLS on loopback).
        Answers its address."""
        self.procs.stop("caddy")
        port = free_port()
        config = OUT / "Caddyfile"
        config.write_text(
            f"""# Generated by bench/bench.py for one run.
{{
\tadmin off
\tauto_https off
}}
http://127.0.0.1:{port} {{
\treverse_proxy 127.0.0.1:{self.app_port} {{
\t\ttransport http {{
\t\t\tversions h2c
\t\t}}
\t}}
}}
"""
        )
        env = base_env()
        env["XDG_DATA_HOME"] = str(OUT / "caddy-data")
        env["XDG_CONFIG_HOME"] = str(OUT / "caddy-config")
        p = self.procs.start("caddy", [shutil.which("caddy"), "run", "--config", config,
                                       "--adapter", "caddyfile"], env=env)
        wait_port(port, p, "caddy")
        return f"127.0.0.1:{port}"

    @property
    def app_pid(self) -> int:
        assert self.app is not None
        return self.app.pid

    # -- the Express peer (bench/peers/express), for the token phase

    def start_peer(self) -> int:
        """The Express peer on a free port of its own, against this run's database,
        with the app's LiveKit key and secret and the app's base as PUBLIC_URL (it
        checks Origin against it, as the app does). Stopped with everything else,
        or earlier with stop_peer."""
        node = shutil.which("node")
        if not node:
            raise SystemExit("node is not on PATH: the token phase's Express peer needs Node.js 20")
        if not (PEER_DIR / "node_modules" / "express").is_dir():
            raise SystemExit(f"{PEER_DIR}/node_modules is missing: scripts/setup --bench runs npm ci there")
        self.procs.stop("express-peer")
        self.peer_port = free_port()
        self.peer_base = f"http://127.0.0.1:{self.peer_port}"
        self.peer_settings = {
            "NODE_ENV": "production",
            "PORT": str(self.peer_port),
            "DATABASE_URL": f"{PG_BASE}/{DB_NAME}",
            # The app's pool size, whatever BENCH_APP_ENV made it.
            "DATABASE_POOL_SIZE": self.settings.get("DATABASE_POOL_SIZE", "16"),
            "PUBLIC_URL": self.base,
            "LIVEKIT_API_KEY": self.lk_key,
            "LIVEKIT_API_SECRET": self.lk_secret,
            "LIVEKIT_PUBLIC_URL": self.lk_ws,
        }
        env = base_env()
        env.update(self.peer_settings)
        p = self.procs.start("express-peer", [node, PEER_DIR / "server.js"], env=env, cwd=PEER_DIR)
        wait_port(self.peer_port, p, "express-peer")
        self.peer = p
        return p.pid

    def stop_peer(self) -> None:
        self.procs.stop("express-peer")
        self.peer = None

    @property
    def peer_pid(self) -> int:
        assert self.peer is not None
        return self.peer.pid

    def exited(self, pid: int) -> str | None:
        """The name and exit code of the app or the peer if `pid` is one of them and it has exited."""
        for name, p in (("stagepass", self.app), ("express-peer", self.peer)):
            if p is not None and p.pid == pid and p.poll() is not None:
                return f"{name} (pid {pid}) exited with {p.returncode}"
        return None

    # -- data

    def seed(self) -> None:
        plan = self.plan
        # One per fan-out run: each N, then pinned, then behind the proxy.
        self.n_senders = plan.reps * (len(plan.fanout_ns) + 2)
        n_subscribers = max(max(plan.fanout_ns), plan.storm_n)
        n_enforce = plan.reps * plan.enforce_viewers
        n_media = max(plan.media_steps)
        total = self.n_senders + 1 + n_subscribers + n_enforce + n_media
        psql(
            DB_NAME,
            f"""
            BEGIN;
            INSERT INTO users (email, display_name, password_hash)
              VALUES ('creator@bench.invalid', 'Bench Creator', '!no-sign-in');
            INSERT INTO users (email, display_name, password_hash)
              SELECT 'viewer' || g || '@bench.invalid', 'Viewer ' || g, '!no-sign-in'
              FROM generate_series(1, {total}) g;
            INSERT INTO channels (handle, title, owner_id)
              SELECT 'bench', 'Bench channel', id FROM users WHERE email = 'creator@bench.invalid';
            INSERT INTO channel_members (channel_id, user_id, role)
              SELECT id, owner_id, 'owner' FROM channels WHERE handle = 'bench';
            INSERT INTO streams (channel_id, title, description, access)
              SELECT id, 'Bench night', 'A stream for the benchmark.', 'pass' FROM channels WHERE handle = 'bench';
            -- Everyone holds a channel pass, as if bought an hour ago.
            INSERT INTO access_grants (user_id, channel_id, source, starts_at, expires_at)
              SELECT u.id, c.id, 'comp', now() - interval '1 hour', now() + interval '1 day'
              FROM users u CROSS JOIN channels c
              WHERE c.handle = 'bench' AND u.email LIKE 'viewer%';
            -- A chat that has been going for a while: the panel's 100 messages,
            -- every tenth the creator's with a link (badge, linkified), an hour
            -- old so that no sender's rate or repeat limits count them.
            INSERT INTO chat_messages (stream_id, author_id, body, seq, created_at, visible_at)
              SELECT s.id, u.id,
                     CASE WHEN g % 10 = 0 THEN 'Setlist and merch: https://example.com/bench/' || g
                          ELSE 'Message ' || g || ' from the crowd: loving the set tonight, greetings from here' END,
                     g, now() - interval '1 hour' + g * interval '10 seconds',
                     now() - interval '1 hour' + g * interval '10 seconds'
              FROM streams s CROSS JOIN generate_series(1, 100) g
              JOIN users u ON u.email = CASE WHEN g % 10 = 0 THEN 'creator@bench.invalid'
                                            ELSE 'viewer' || (g % 40 + 1) || '@bench.invalid' END;
            UPDATE streams SET chat_seq = 100;
            COMMIT;
            """,
        )
        self.owner_id = int(psql(DB_NAME, "SELECT id FROM users WHERE email = 'creator@bench.invalid'"))
        self.channel_id = int(psql(DB_NAME, "SELECT id FROM channels WHERE handle = 'bench'"))
        self.stream_id = int(psql(DB_NAME, "SELECT id FROM streams"))
        self.room_name = psql(DB_NAME, "SELECT room_name FROM streams")
        viewer_ids = [
            int(x)
            for x in psql(DB_NAME, "SELECT id FROM users WHERE email LIKE 'viewer%' ORDER BY id").split()
        ]

        # Sessions exactly as our tower-sessions store writes them (auth/session_store.rs):
        # the id is tower-sessions' (16 random bytes, base64url without padding, which is
        # also the cookie's value); data is the session's key-value map as JSONB.
        now = int(time.time())
        expires = datetime.fromtimestamp(now + 7 * 24 * 3600, timezone.utc).isoformat()  # the idle timeout
        rows = io.StringIO()
        out = csv.writer(rows)
        sessions = []
        for uid in [self.owner_id] + viewer_ids:
            cookie = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()
            csrf = secrets.token_hex(32)
            data = {"user_id": uid, "signed_in_at": now, "csrf_token": csrf}
            out.writerow([cookie, json.dumps(data), expires, uid])
            sessions.append(Viewer(uid, cookie, csrf))
        psql(
            DB_NAME,
            "\\copy sessions (id, data, expires_at, user_id) FROM pstdin WITH (FORMAT csv)",
            stdin=rows.getvalue(),
        )
        self.owner = sessions[0]
        viewers = sessions[1:]
        self.senders, viewers = viewers[: self.n_senders], viewers[self.n_senders :]
        self.http_viewer, viewers = viewers[0], viewers[1:]
        self.subscribers, viewers = viewers[:n_subscribers], viewers[n_subscribers:]
        self.enforce_viewers, viewers = viewers[:n_enforce], viewers[n_enforce:]
        self.media_viewers = viewers[:n_media]
        (OUT / "sessions").mkdir(exist_ok=True)
        self.subscribers_file = OUT / "sessions" / "subscribers.txt"
        self.subscribers_file.write_text("\n".join(v.line() for v in self.subscribers) + "\n")
        note(f"{total} viewers with a channel pass and a session, stream {self.stream_id}")

    # -- HTTP as a viewer or the owner

    def headers(self, who: Viewer, csrf: bool = True) -> dict:
        h = {"Cookie": f"stagepass_session={who.cookie}"}
        if csrf:
            h["X-CSRF-Token"] = who.csrf
        return h

    async def go_live(self) -> None:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{self.base}/studio/streams/{self.stream_id}/live",
                headers=self.headers(self.owner),
                allow_redirects=False,
            ) as r:
                if r.status != 303:
                    raise SystemExit(f"going live answered {r.status}: {await r.text()}")
        status = psql(DB_NAME, f"SELECT status FROM streams WHERE id = {self.stream_id}")
        if status != "live":
            raise SystemExit(f"the stream is {status} after going live; see {OUT}/stagepass.log")

    async def token(self, http: aiohttp.ClientSession, who: Viewer, host: bool = False) -> dict:
        path = f"/studio/streams/{self.stream_id}/token" if host else f"/s/{self.stream_id}/token"
        async with http.post(self.base + path, headers=self.headers(who)) as r:
            body = await r.json(content_type=None)
            if r.status != 200:
                raise RuntimeError(f"POST {path}: {r.status} {body}")
            return body

    async def publish(self, host_room: rtc.Room) -> "Publisher":
        """The host publishing video and audio (bench/publisher.py), started by the first
        phase that needs it and left running (the room stays live, with video) until
        the run ends. It takes the host's identity: its connection replaces the idle
        host's."""
        if self.publisher is None:
            await host_room.disconnect()
            self.publisher = await Publisher.start(self)
        return self.publisher


class Publisher:
    """bench/publisher.py in a process of its own, with a host token from the app;
    `latest` holds the last of the statistics lines it prints every 2 s."""

    def __init__(self, world: World, proc: subprocess.Popen):
        self.world, self.proc = world, proc
        self.latest: dict = {}
        self.reader = asyncio.create_task(self.read())

    @staticmethod
    def describe(plan: Plan) -> dict:
        return {"width": plan.width, "height": plan.height, "fps": plan.fps, "codec": "VP8",
                "max_bitrate_kbps": 1000, "simulcast": False, "audio": "48 kHz mono Opus, 440 Hz tone"}

    @classmethod
    async def start(cls, world: World) -> "Publisher":
        plan = world.plan
        async with aiohttp.ClientSession() as http:
            host = await world.token(http, world.owner, host=True)
        proc = world.procs.start(
            "publisher",
            # Stamped: each frame carries its capture time, for the glass phase.
            [sys.executable, REPO / "bench" / "publisher.py", host["url"], host["token"],
             plan.width, plan.height, plan.fps, "stamp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(OUT / "publisher.log", "ab"),
        )
        pub = cls(world, proc)
        deadline = time.time() + 30
        while not pub.latest.get("published") and time.time() < deadline:
            await asyncio.sleep(0.1)
        if not pub.latest.get("published"):
            raise SystemExit(f"the publisher did not publish; see {OUT}/publisher.log")
        note(f"publisher: {plan.width}x{plan.height} VP8 at {plan.fps} fps + Opus as {pub.latest.get('identity')}")
        return pub

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, self.proc.stdout.readline)
            if not line:
                return
            self.latest.update(json.loads(line))

    def snapshot(self) -> dict:
        return dict(self.latest)

    def sent_since(self, before: dict, dt: float) -> tuple[float, float]:
        """Video frames per second and kbps sent between `before` (a snapshot) and now,
        by the publisher's own clock (its lines come every 2 s; `dt` if none came)."""
        now = self.snapshot()
        pdt = (now.get("t", 0) - before.get("t", 0)) or dt
        fps = (now.get("frames_sent", 0) - before.get("frames_sent", 0)) / pdt
        kbps = (now.get("bytes_sent", 0) - before.get("bytes_sent", 0)) * 8 / pdt / 1000
        return fps, kbps

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.reader.cancel()
        self.world.procs.procs.pop("publisher", None)
        self.world.publisher = None


# ---- phases ---------------------------------------------------------------------------


def oha(plan: Plan, url: str, seconds: int, method: str, headers: dict, rate: int | None,
        connections: int | None = None) -> dict:
    """oha's JSON for `seconds` of `method url`: at a fixed `rate`, latency-corrected
    (a stall counts against every request that should have been sent during it),
    or with `rate` None as fast as the server answers (no rate, so nothing to
    correct against)."""
    argv = [OHA, "-z", f"{seconds}s", "-c", str(connections or plan.oha_connections),
            "--no-tui", "--output-format", "json", "-m", method]
    if rate is not None:
        argv += ["-q", str(rate), "--latency-correction"]
    for k, v in headers.items():
        argv += ["-H", f"{k}: {v}"]
    argv.append(url)
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=seconds + 120)
    if r.returncode != 0:
        raise SystemExit(f"oha failed: {r.stderr.strip()}")
    return json.loads(r.stdout)


def http_run(plan: Plan, world: World, path: str, method: str, rate: int | None, *,
             base: str | None = None, pid: int | None = None, connections: int | None = None) -> dict:
    """One oha run of `method base+path` as world.http_viewer (its cookie, and its
    CSRF header on a POST): at `rate` req/s over plan.oha_connections, or with
    `rate` None the most the server answers over `connections`. `base` and `pid`
    name the server and the process whose CPU time is counted: the app's unless
    given (the Express peer's for its runs)."""
    base = base or world.base
    pid = pid or world.app_pid
    connections = connections or plan.oha_connections
    # The server's own CPU time per request: what other work on the machine changes least.
    cpu0 = cpu_seconds(pid)
    busy0, total0 = machine_busy()
    j = oha(plan, base + path, plan.http_seconds, method, world.headers(world.http_viewer, csrf=method == "POST"),
            rate, connections)
    cpu1 = cpu_seconds(pid)
    busy1, total1 = machine_busy()
    gone = world.exited(pid)
    if gone:
        raise SystemExit(f"{gone} during {method} {base + path}; see {OUT}/*.log")
    s = j["summary"]
    codes = {str(k): v for k, v in (j.get("statusCodeDistribution") or {}).items()}
    errors = {k: v for k, v in (j.get("errorDistribution") or {}).items() if "deadline" not in k}
    lat = j.get("latencyPercentiles") or {}
    ms = lambda v: None if v is None else v * 1000  # noqa: E731
    ok = codes.get("200", 0)
    return {
        "rate": rate,
        "connections": connections,
        "seconds": plan.http_seconds,
        "requests_per_second": s.get("requestsPerSec"),
        "ok_per_second": ok / plan.http_seconds,
        "status_codes": codes,
        "errors": errors,
        "p50_ms": ms(lat.get("p50")),
        "p90_ms": ms(lat.get("p90")),
        "p99_ms": ms(lat.get("p99")),
        "p99_9_ms": ms(lat.get("p99.9")),
        "max_ms": ms(s.get("slowest")),
        "app_cpu_ms_per_request": (cpu1 - cpu0) * 1000 / max(1, sum(codes.values())),
        # Of both cores: the server, Postgres and oha together.
        "machine_cpu_pct": 100 * (busy1 - busy0) / max(1e-9, total1 - total0),
    }


def describe_run(r: dict) -> str:
    return (f"{r['ok_per_second']:.0f} ok/s, p50 {fmt(r['p50_ms'])} ms, p99 {fmt(r['p99_ms'])} ms, "
            f"CPU {r['app_cpu_ms_per_request']:.3f} ms a request (machine {r['machine_cpu_pct']:.0f} %), "
            f"codes {r['status_codes']}, errors {r['errors'] or 'none'}")


def http_phase(plan: Plan, world: World, name: str, path: str, method: str) -> dict:
    """The app alone on one route: the most it answers (per repetition), then each
    fixed rate `plan.reps` times."""
    say(f"{name}: {method} {path}: the most it answers over {plan.max_connections} connections, then "
        f"{', '.join(map(str, plan.rates))} req/s; {plan.reps} x {plan.http_seconds} s each")
    warm = http_run_warmup(plan, world, world.base + path, method)
    note(f"warm-up: {warm}")
    top = []
    for rep in range(plan.reps):
        r = http_run(plan, world, path, method, None, connections=plan.max_connections)
        top.append(r)
        note(f"  max run {rep + 1}: {describe_run(r)}")
    runs = {}
    for rate in plan.rates:
        runs[rate] = []
        for rep in range(plan.reps):
            r = http_run(plan, world, path, method, rate)
            runs[rate].append(r)
            note(f"{rate:>5} req/s run {rep + 1}: {describe_run(r)}")
    return {"url": path, "method": method, "max": top, "runs": {str(k): v for k, v in runs.items()},
            "rss_after_kib": rss_kib(world.app_pid)}


def http_run_warmup(plan: Plan, world: World, url: str, method: str) -> str:
    j = oha(plan, url, plan.warmup_seconds, method, world.headers(world.http_viewer, csrf=method == "POST"),
            plan.rates[0])
    codes = j.get("statusCodeDistribution") or {}
    if set(codes) != {"200"}:
        raise SystemExit(f"{method} {url} does not answer 200 during warm-up: {codes}")
    return f"{sum(codes.values())} requests, all 200"


# ---- the token endpoint: stagepass, the Express peer, the database's limit -----------------


def pgbench_bin() -> str | None:
    own = Path("/usr/lib/postgresql/15/bin/pgbench")
    return str(own) if own.exists() else shutil.which("pgbench")


def pgbench_run(plan: Plan, world: World) -> dict:
    """bench/token.sql (the endpoint's queries, as the app sends them) for
    plan.http_seconds from pgbench's clients, as the same viewer: transactions a
    second = tokens a second the database could answer if nothing else cost
    anything. Its statements fail a transaction that finds no row (\\gset)."""
    exe = pgbench_bin()
    if not exe:
        raise SystemExit("pgbench is not installed (Debian's postgresql-client-15 has it)")
    v = world.http_viewer
    argv = [exe, "-n", "-f", TOKEN_SQL, "-c", plan.pgbench_clients, "-j", plan.pgbench_threads,
            "-T", plan.http_seconds, "-M", "prepared",
            "-D", f"session={v.cookie}", "-D", f"user={v.user_id}", "-D", f"stream={world.stream_id}",
            f"{PG_BASE}/{DB_NAME}"]
    busy0, total0 = machine_busy()
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=plan.http_seconds + 60)
    busy1, total1 = machine_busy()
    out = r.stdout + r.stderr
    if r.returncode != 0 or "aborted" in out:
        raise SystemExit(f"pgbench failed ({r.returncode}):\n" + "\n".join(out.strip().splitlines()[-15:]))

    def grab(prefix: str) -> str | None:
        # "tps = 1234.5 (…)", "latency average = 1.2 ms", "number of …: 12345"
        line = next((x for x in out.splitlines() if x.startswith(prefix)), None)
        return line[len(prefix):].lstrip(" =:").strip() if line else None

    tps = grab("tps =")  # "tps = 1234.5 (without initial connection time)"
    if tps is None:
        raise SystemExit(f"no tps in pgbench's output:\n{out}")
    processed = grab("number of transactions actually processed")  # "a/b" with -t, "a" with -T
    failed = grab("number of failed transactions")
    latency = grab("latency average")  # "1.463 ms"
    return {
        "tps": float(tps.split()[0]),
        "latency_avg_ms": float(latency.split()[0]) if latency else None,
        "transactions": int(processed.split("/")[0]) if processed else None,
        "failed": int(failed.split()[0]) if failed else None,
        "clients": plan.pgbench_clients,
        "threads": plan.pgbench_threads,
        "seconds": plan.http_seconds,
        "machine_cpu_pct": 100 * (busy1 - busy0) / max(1e-9, total1 - total0),
    }


def peer_versions() -> dict:
    v = {}
    for pkg in PEER_PACKAGES:
        try:
            v[pkg] = json.loads((PEER_DIR / "node_modules" / pkg / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            v[pkg] = "missing"
    node = shutil.which("node")
    v["node"] = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip() if node else "missing"
    return v


def token_phase(plan: Plan, world: World) -> dict:
    """POST /s/{id}/token as one viewer, stagepass and the Express peer in turn within
    each repetition (so that both see the same machine): the most each answers,
    then each fixed rate; then pgbench on the endpoint's own queries."""
    path = f"/s/{world.stream_id}/token"
    sides = {"stagepass": (world.base, world.app_pid), "peer": (world.peer_base, world.peer_pid)}
    say(f"token endpoint: POST {path}, stagepass and the Express peer alternating: the most each answers "
        f"over {plan.max_connections} connections, then {', '.join(map(str, plan.rates))} req/s over "
        f"{plan.oha_connections}; then pgbench on bench/token.sql; {plan.reps} x {plan.http_seconds} s each")
    for side, (base, _pid) in sides.items():
        note(f"warm-up {side}: {http_run_warmup(plan, world, base + path, 'POST')}")
    runs = []
    for rep in range(plan.reps):
        run: dict = {"max": {}, "rates": {}}
        for side, (base, pid) in sides.items():
            r = run["max"][side] = http_run(plan, world, path, "POST", None, base=base, pid=pid,
                                            connections=plan.max_connections)
            note(f"run {rep + 1} max   {side:<9}: {describe_run(r)}")
        for rate in plan.rates:
            at = run["rates"][str(rate)] = {}
            for side, (base, pid) in sides.items():
                r = at[side] = http_run(plan, world, path, "POST", rate, base=base, pid=pid)
                note(f"run {rep + 1} {rate:>5} {side:<9}: {describe_run(r)}")
        pg = run["pgbench"] = pgbench_run(plan, world)
        note(f"run {rep + 1} pgbench: {pg['tps']:.0f} tokens/s the database answers ({pg['clients']} clients, "
             f"average {fmt(pg['latency_avg_ms'], 3)} ms, machine {pg['machine_cpu_pct']:.0f} %)")
        runs.append(run)
    return {"url": path, "method": "POST", "runs": runs, "pgbench_script": "bench/token.sql",
            "rss_after_kib": rss_kib(world.app_pid), "peer_rss_after_kib": rss_kib(world.peer_pid)}


def client(args: list, cpus: str | None = None) -> dict:
    pin = held_to(cpus)
    r = subprocess.run(pin + [str(CLIENT_BIN)] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=900)
    if r.stderr.strip():
        for line in r.stderr.strip().splitlines():
            note(line.strip())
    if r.returncode != 0:
        raise SystemExit(f"stagepass-bench {args[0]} failed ({r.returncode})")
    return json.loads(r.stdout)


def storm_phase(plan: Plan, world: World) -> dict:
    say(f"join storm: {plan.storm_n} distinct viewers ask for a token within {plan.storm_within_ms / 1000:.0f} s, "
        f"{plan.reps} runs")
    runs = []
    for rep in range(plan.reps):
        r = client(["storm", "--addr", f"127.0.0.1:{world.app_port}", "--stream", world.stream_id,
                    "--sessions", world.subscribers_file, "--n", plan.storm_n, "--within-ms", plan.storm_within_ms])
        runs.append(r)
        lat = r["latency"]
        note(f"run {rep + 1}: {r['ok']}/{r['n']} tokens in {r['elapsed_seconds']:.1f} s, p50 {lat['p50_ms']:.2f} ms, "
             f"p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.1f} ms, statuses {r['statuses']}")
        time.sleep(1)
    return {"runs": runs}


def fanout_run(plan: Plan, world: World, addr: str, pid: int, n: int, sender: "Viewer", tag: str,
               cpus: str | None = None) -> dict:
    """One fan-out run of the load client: N subscribers through `addr`, one
    sender posting, the app's memory read from `pid`."""
    return client(["fanout", "--addr", addr, "--stream", world.stream_id,
                   "--sessions", world.subscribers_file, "--n", n, "--sender", sender.line(),
                   "--messages", plan.fanout_messages, "--interval-ms", plan.fanout_interval_ms,
                   "--app-pid", pid, "--tag", tag, "--wait-ms", plan.fanout_wait_ms], cpus=cpus)


def fanout_phase(plan: Plan, world: World) -> dict:
    say(f"chat fan-out: one sender, N SSE subscribers (N = {', '.join(map(str, plan.fanout_ns))}), "
        f"{plan.fanout_messages} messages {plan.fanout_interval_ms} ms apart, {plan.reps} runs each, "
        "a fresh app process per run")
    results = {}
    i = 0
    for n in plan.fanout_ns:
        results[str(n)] = []
        for rep in range(plan.reps):
            pid = world.start_app()
            time.sleep(1.0)
            sender = world.senders[i]
            i += 1
            r = fanout_run(plan, world, f"127.0.0.1:{world.app_port}", pid, n, sender, f"{n}x{rep}")
            results[str(n)].append(r)
            lat = r["latency"]
            per = r["rss_per_subscriber_bytes"]
            note(f"N={n} run {rep + 1}: {r['subscribed']}/{n} subscribed in {r['connect_seconds']:.1f} s, "
                 f"delivered {r['delivered']}/{r['expected_deliveries']}, p50 {fmt(lat['p50_ms'])} ms, "
                 f"p99 {fmt(lat['p99_ms'])} ms, max {fmt(lat['max_ms'])} ms; RSS {r['rss_before_kib']} -> "
                 f"{r['rss_connected_kib']} KiB ({fmt(per and per / 1024)} KiB per subscriber); "
                 f"posts {r['post_statuses']}")
    # Where p99 comes from: the same runs with the load client held to one
    # core and the app to the other (Postgres and livekit-server float), so
    # that reading 10,000 sockets no longer takes the app's CPU. On a 2-core
    # machine that is the most separation there is.
    pinned = []
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        n = max(plan.fanout_ns)
        for rep in range(plan.reps):
            pid = world.start_app(cpus="0")
            time.sleep(1.0)
            sender = world.senders[i]
            i += 1
            r = fanout_run(plan, world, f"127.0.0.1:{world.app_port}", pid, n, sender, f"pinned{n}x{rep}", cpus="1")
            pinned.append(r)
            lat = r["latency"]
            note(f"pinned (app on CPU 0, load client on CPU 1), N={n} run {rep + 1}: "
                 f"delivered {r['delivered']}/{r['expected_deliveries']}, p50 {fmt(lat['p50_ms'])} ms, "
                 f"p99 {fmt(lat['p99_ms'])} ms, max {fmt(lat['max_ms'])} ms")
    # Behind a proxy: Caddy in front, speaking HTTP/2 cleartext (h2c) to the
    # app, as a deployment behind a proxy would. Caddy multiplexes the subscribers'
    # streams over a few connections, so the app no longer holds hyper's two
    # 8 KiB buffers per subscriber. The same N, fresh app processes.
    proxied = []
    if shutil.which("caddy"):
        n = max(plan.fanout_ns)
        for rep in range(plan.reps):
            pid = world.start_app()
            proxy = world.start_proxy()
            time.sleep(1.0)
            sender = world.senders[i]
            i += 1
            r = fanout_run(plan, world, proxy, pid, n, sender, f"proxy{n}x{rep}")
            # The peak (VmHWM): by now the subscribers have gone.
            r["proxy_peak_kib"] = peak_rss_kib(world.procs.procs["caddy"].pid)
            proxied.append(r)
            world.procs.stop("caddy")
            lat = r["latency"]
            per = r["rss_per_subscriber_bytes"]
            note(f"through Caddy (h2c to the app), N={n} run {rep + 1}: {r['subscribed']}/{n} subscribed, "
                 f"delivered {r['delivered']}/{r['expected_deliveries']}, p50 {fmt(lat['p50_ms'])} ms, "
                 f"p99 {fmt(lat['p99_ms'])} ms; app RSS {r['rss_before_kib']} -> {r['rss_connected_kib']} KiB "
                 f"({fmt(per and per / 1024)} KiB per subscriber); Caddy peak RSS {r['proxy_peak_kib']} KiB")
    else:
        note("caddy not found: the run behind a proxy is skipped (scripts/setup --bench installs it)")
    # What a plain keep-alive connection costs the app, chat or not (hyper gives
    # every HTTP/1 connection an 8 KiB read and an 8 KiB write buffer): the
    # floor under the memory per subscriber.
    n = max(plan.fanout_ns)
    pid = world.start_app()
    time.sleep(1.0)
    idle = client(["idle", "--addr", f"127.0.0.1:{world.app_port}", "--n", n, "--app-pid", pid])
    note(f"{n} idle keep-alive connections (one GET /healthz each): RSS {idle['rss_before_kib']} -> "
         f"{idle['rss_connected_kib']} KiB ({fmt(idle['rss_per_connection_bytes'] / 1024)} KiB per connection)")
    world.start_app()
    return {"runs": results, "idle_connections": idle, "proxied": proxied, "pinned": pinned,
            "caddy": caddy_version()}


def caddy_version() -> str | None:
    caddy = shutil.which("caddy")
    if not caddy:
        return None
    r = subprocess.run([caddy, "version"], capture_output=True, text=True)
    return r.stdout.split()[0] if r.returncode == 0 and r.stdout.split() else None


def fmt(x, digits=2):
    if x is None:
        return "n/a"
    return f"{x:.{digits}f}"


async def connect_viewers(world: World, http: aiohttp.ClientSession, who: list, subscribe: bool):
    """Tokens from the app's endpoint, then one LiveKit connection each."""
    tokens = await asyncio.gather(*(world.token(http, v) for v in who))
    rooms = []
    for t in tokens:
        room = rtc.Room()
        rooms.append((room, t["identity"]))
    await asyncio.gather(
        *(room.connect(t["url"], t["token"], rtc.RoomOptions(auto_subscribe=subscribe))
          for (room, _), t in zip(rooms, tokens))
    )
    return rooms


async def enforcement_phase(plan: Plan, world: World, lk: api.LiveKitAPI) -> dict:
    say(f"enforcement: {plan.enforce_viewers} viewers in the room (LiveKit Python SDK), grants ending "
        f"{plan.enforce_spacing_ms} ms apart; {plan.reps} runs")
    runs = []
    async with aiohttp.ClientSession() as http:
        for rep in range(plan.reps):
            group = world.enforce_viewers[rep * plan.enforce_viewers : (rep + 1) * plan.enforce_viewers]
            rooms = await connect_viewers(world, http, group, subscribe=False)
            left_at: dict[str, float] = {}
            for room, ident in rooms:
                room.on("disconnected", lambda *_, ident=ident: left_at.setdefault(ident, time.time()))
            ids = ",".join(str(v.user_id) for v in group)
            # The app knows they are there once LiveKit's participant_joined webhooks land.
            deadline = time.time() + 30
            while time.time() < deadline:
                n = int(psql(DB_NAME, f"SELECT count(DISTINCT user_id) FROM presence WHERE stream_id = "
                                      f"{world.stream_id} AND left_at IS NULL AND user_id IN ({ids})"))
                if n == len(group):
                    break
                await asyncio.sleep(0.2)
            else:
                raise SystemExit(f"only {n} of {len(group)} viewers are in presence after 30 s")
            # Their passes end 2 s from now, one every spacing ms, by the database's clock.
            rows = psql(
                DB_NAME,
                f"""WITH v AS (SELECT u, k FROM unnest(ARRAY[{ids}]::bigint[]) WITH ORDINALITY AS t(u, k))
                    UPDATE access_grants g
                       SET expires_at = now() + interval '2 seconds' + (v.k - 1) * interval '{plan.enforce_spacing_ms} milliseconds'
                      FROM v WHERE g.user_id = v.u AND g.channel_id = {world.channel_id}
                 RETURNING g.user_id, extract(epoch FROM g.expires_at)""",
            )
            expires = {uid: float(at) for uid, at in (line.split("|") for line in rows.splitlines())}
            expected = {ident for _, ident in rooms}
            gone: dict[str, float] = {}
            polls = []
            deadline = time.time() + 2 + len(group) * plan.enforce_spacing_ms / 1000 + 30
            while len(gone) < len(expected) and time.time() < deadline:
                t0 = time.time()
                resp = await lk.room.list_participants(api.ListParticipantsRequest(room=world.room_name))
                t1 = time.time()
                polls.append(t1 - t0)
                present = {p.identity for p in resp.participants}
                for ident in expected - present - set(gone):
                    gone[ident] = t1
                await asyncio.sleep(0.05)
            server = [gone[i] - expires[i] for i in expected if i in gone]
            client_seen = [left_at[i] - expires[i] for i in expected if i in left_at]
            r = {
                "viewers": len(group),
                "removed": len(gone),
                "not_removed": sorted(expected - set(gone)),
                "latency_s": {"p50": pct(server, 0.5), "p99": pct(server, 0.99), "max": max(server, default=None),
                              "min": min(server, default=None)},
                "client_disconnected_s": {"p50": pct(client_seen, 0.5), "p99": pct(client_seen, 0.99),
                                          "count": len(client_seen)},
                "poll_ms": {"p50": pct([p * 1000 for p in polls], 0.5), "max": max(polls, default=0) * 1000},
            }
            runs.append(r)
            note(f"run {rep + 1}: {r['removed']}/{r['viewers']} removed; grant end -> gone from ListParticipants "
                 f"p50 {fmt(r['latency_s']['p50'], 3)} s, p99 {fmt(r['latency_s']['p99'], 3)} s, "
                 f"max {fmt(r['latency_s']['max'], 3)} s (client saw p50 {fmt(r['client_disconnected_s']['p50'], 3)} s)")
            for room, _ in rooms:
                try:
                    await room.disconnect()
                except Exception:
                    pass
            await asyncio.sleep(1)
    return {"runs": runs, "spacing_ms": plan.enforce_spacing_ms, "poll_interval_ms": 50}


async def inbound_video(room: rtc.Room) -> dict:
    out = {"frames_received": 0, "frames_decoded": 0, "bytes_received": 0, "frame_width": 0}
    try:
        stats = await room.get_rtc_stats()
    except Exception:
        return out
    # With one peer connection for both directions (the SDK's default), inbound
    # streams may be reported on either side.
    for s in list(stats.subscriber_stats) + list(stats.publisher_stats):
        if s.HasField("inbound_rtp") and s.inbound_rtp.stream.kind == "video":
            i = s.inbound_rtp.inbound
            out["frames_received"] += i.frames_received
            out["frames_decoded"] += i.frames_decoded
            out["bytes_received"] += i.bytes_received
            out["frame_width"] = max(out["frame_width"], i.frame_width)
    return out


async def media_phase(plan: Plan, world: World, host_room: rtc.Room) -> dict:
    say(f"real media: 1 publisher ({plan.width}x{plan.height} VP8 at {plan.fps} fps + 48 kHz audio), "
        f"subscribers in steps of {plan.media_steps} until the frame rate no longer holds")
    started = time.time()
    pub = await world.publish(host_room)
    async with aiohttp.ClientSession() as http:
        subs: list[tuple[rtc.Room, str]] = []
        steps = []
        reached = 0
        for target in plan.media_steps:
            if time.time() - started > plan.media_budget_s:
                note("time budget of the media phase spent; stopping the ramp")
                break
            new = world.media_viewers[len(subs) : target]
            try:
                subs += await connect_viewers(world, http, new, subscribe=True)
            except Exception as e:
                steps.append({"subscribers": target, "error": str(e)})
                note(f"{target} subscribers: connecting failed: {e}")
                break
            # Until each has the video track (or 15 s).
            deadline = time.time() + 15
            while time.time() < deadline:
                w = await asyncio.gather(*(inbound_video(r) for r, _ in subs))
                if all(x["frames_received"] > 0 for x in w):
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(3)
            s0 = await asyncio.gather(*(inbound_video(r) for r, _ in subs))
            t0, lk0, me0, m0 = time.time(), cpu_seconds(world.lk_pid), cpu_seconds(os.getpid()), machine_busy()
            p0 = pub.snapshot()
            await asyncio.sleep(plan.media_window_s)
            s1 = await asyncio.gather(*(inbound_video(r) for r, _ in subs))
            t1, lk1, me1, m1 = time.time(), cpu_seconds(world.lk_pid), cpu_seconds(os.getpid()), machine_busy()
            dt = t1 - t0
            sent_fps, sent_kbps = pub.sent_since(p0, dt)
            fps = [(b["frames_received"] - a["frames_received"]) / dt for a, b in zip(s0, s1)]
            decoded = [(b["frames_decoded"] - a["frames_decoded"]) / dt for a, b in zip(s0, s1)]
            kbps = [(b["bytes_received"] - a["bytes_received"]) * 8 / dt / 1000 for a, b in zip(s0, s1)]
            holding = sum(1 for f in fps if f >= 0.9 * plan.fps)
            step = {
                "subscribers": len(subs),
                "window_s": round(dt, 2),
                "publisher_sent_fps": round(sent_fps, 1),
                "publisher_sent_kbps": round(sent_kbps),
                "received_fps": {"median": median(fps), "min": min(fps), "p5": pct(fps, 0.05)},
                "decoded_fps": {"median": median(decoded), "min": min(decoded)},
                "received_kbps": {"median": median(kbps), "min": min(kbps)},
                "frame_width": median([b["frame_width"] for b in s1]),
                "holding_90pct_fps": holding,
                "livekit_cpu_pct": round((lk1 - lk0) / dt * 100, 1),
                "subscriber_process_cpu_pct": round((me1 - me0) / dt * 100, 1),
                "machine_cpu_pct": round((m1[0] - m0[0]) / (m1[1] - m0[1]) * 100, 1) if m1[1] > m0[1] else None,
            }
            steps.append(step)
            holds = holding >= 0.95 * len(subs)
            if holds:
                reached = len(subs)
            note(f"{len(subs):>3} subscribers: received {fmt(step['received_fps']['median'], 1)} fps median "
                 f"(min {fmt(step['received_fps']['min'], 1)}), {fmt(step['received_kbps']['median'], 0)} kbps median; "
                 f"publisher sent {step['publisher_sent_fps']} fps; livekit-server CPU {step['livekit_cpu_pct']} %, "
                 f"subscribers' process {step['subscriber_process_cpu_pct']} %, machine {step['machine_cpu_pct']} %"
                 + ("" if holds else "  <- no longer holds"))
            if not holds:
                break
        for room, _ in subs:
            try:
                await room.disconnect()
            except Exception:
                pass

    return {
        "publisher": Publisher.describe(plan),
        "steps": steps,
        "subscribers_reached": reached,
        "criterion": "at least 95 % of subscribers receive at least 90 % of the published frame rate",
    }


# ---- recording ------------------------------------------------------------------------


async def app_window(world: World, seconds: float, pub: Publisher | None = None, every: float = 1.0,
                     tick=None) -> dict:
    """The app's CPU (utime + stime, % of one core) and RSS (sampled every `every` s)
    over `seconds`, with livekit-server's CPU, the machine's and what the publisher
    sent. `tick(elapsed_s, rss_kib)` is called at each sample; True ends the window."""
    app = world.app_pid
    rss = []
    p0 = pub.snapshot() if pub else {}
    t0, a0, l0, m0 = time.time(), cpu_seconds(app), cpu_seconds(world.lk_pid), machine_busy()
    while True:
        now = time.time()
        kib = rss_kib(app)
        rss.append((round(now - t0, 1), kib))
        if tick and tick(now - t0, kib):
            break
        left = t0 + seconds - now
        if left <= 0:
            break
        await asyncio.sleep(min(every, left))
    t1, a1, l1, m1 = time.time(), cpu_seconds(app), cpu_seconds(world.lk_pid), machine_busy()
    dt = t1 - t0
    values = [k for _, k in rss if k is not None]
    out = {
        "seconds": round(dt, 1),
        "app_cpu_pct": (a1 - a0) / dt * 100,
        "livekit_cpu_pct": (l1 - l0) / dt * 100,
        "machine_cpu_pct": (m1[0] - m0[0]) / (m1[1] - m0[1]) * 100 if m1[1] > m0[1] else None,
        "rss_kib": {"median": median(values), "min": min(values), "max": max(values), "last": values[-1]},
        "rss_series": rss,
    }
    if pub:
        out["publisher_sent_fps"], out["publisher_sent_kbps"] = pub.sent_since(p0, dt)
    return out


class AppLog:
    """The app's log lines written since `mark()` that say something about recording,
    or warn: what the report shows when a recording does not go as it should."""

    def __init__(self):
        self.path = OUT / "stagepass.log"
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def lines(self, limit: int = 20) -> list[str]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            text = f.read().decode(errors="replace")
        keep = []
        for line in text.splitlines():
            low = line.lower()
            if "record" in low or '"warn' in low or '"error' in low:
                keep.append(line[:600])
        return keep[-limit:]


def latest_recording(world: World) -> dict | None:
    row = psql(
        DB_NAME,
        f"""SELECT id, status, coalesce(error, ''), coalesce(duration_ms, -1), coalesce(size_bytes, -1),
                   coalesce(object_key, ''),
                   (SELECT count(*) FROM recording_parts p WHERE p.recording_id = r.id),
                   -- How much of the part being written is in the bucket (set as its pieces go up).
                   coalesce((SELECT duration_ms FROM recording_parts p
                             WHERE p.recording_id = r.id ORDER BY part_no DESC LIMIT 1), -1)
              FROM recordings r WHERE stream_id = {world.stream_id} ORDER BY id DESC LIMIT 1""",
    )
    if not row:
        return None
    f = row.split("|")
    return {"id": int(f[0]), "status": f[1], "error": f[2] or None,
            "duration_ms": int(f[3]) if int(f[3]) >= 0 else None,
            "size_bytes": int(f[4]) if int(f[4]) >= 0 else None,
            "object_key": f[5] or None, "parts": int(f[6]),
            "stored_ms": int(f[7]) if int(f[7]) >= 0 else None}


async def wait_recording(world: World, rid: int | None, statuses: set, timeout: float) -> dict | None:
    """Polls the latest recording (newer than `rid`, when given) until its status is
    one of `statuses` or `failed`; None if none appears within `timeout`."""
    deadline = time.time() + timeout
    row = None
    while time.time() < deadline:
        row = latest_recording(world)
        if row and (rid is None or row["id"] != rid) and row["status"] in statuses | {"failed"}:
            return row
        await asyncio.sleep(0.2)
    return row if row and (rid is None or row["id"] != rid) else None


async def owner_post(world: World, path: str) -> int:
    """A form POST of the owner's, as the broadcast page's buttons send it (session
    cookie and CSRF token); the app answers with a flash and a redirect."""
    async with aiohttp.ClientSession() as http:
        async with http.post(world.base + path, headers=world.headers(world.owner),
                             allow_redirects=False) as r:
            return r.status


def object_path(key: str) -> Path | None:
    """Where s3s-fs keeps the object `key` of the bucket (a file under its root)."""
    path = OUT / "s3" / "stagepass" / key
    return path if path.is_file() else None


def ffprobe(path: Path) -> dict | None:
    """Codec, resolution, frames and duration of each stream, decoding every frame
    (`-count_frames`), and what ffprobe had to say about the file (errors)."""
    if not shutil.which("ffprobe"):
        return None
    r = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-of", "json",
         "-show_entries", "format=format_name,duration,size:stream=codec_type,codec_name,width,height,"
         "nb_read_frames,sample_rate,channels", str(path)],
        capture_output=True, text=True, timeout=600,
    )
    try:
        j = json.loads(r.stdout or "{}")
    except ValueError:
        j = {}
    out = {"format": j.get("format", {}).get("format_name"),
           "duration_s": float(j["format"]["duration"]) if j.get("format", {}).get("duration") else None,
           "errors": [line for line in r.stderr.splitlines() if line.strip()][:10]}
    for st in j.get("streams", []):
        kind = st.get("codec_type")
        if kind in ("video", "audio") and kind not in out:
            out[kind] = {k: st[k] for k in ("codec_name", "width", "height", "sample_rate", "channels") if k in st}
            out[kind]["frames"] = int(st["nb_read_frames"]) if st.get("nb_read_frames") else None
    return out


async def record_once(world: World, log: AppLog, hold, label: str) -> dict:
    """Starts a recording through the owner's endpoint, waits until it is active,
    runs `hold(t_active)` (the measurement while it records), stops it, waits until
    it is complete, and describes the result."""
    base = f"/studio/streams/{world.stream_id}/recording"
    before = latest_recording(world)
    log.mark()
    t_req = time.time()
    status = await owner_post(world, f"{base}/start")
    row = await wait_recording(world, before and before["id"], {"active"}, 30)
    if status != 303 or not row or row["status"] != "active":
        lines = log.lines()
        note(f"{label}: start answered {status}; recording {row}")
        for line in lines:
            note(f"  app: {line}")
        return {"failed": f"start answered {status}; recording {row and row['status']}: "
                          f"{row and row['error']}", "app_log": lines}
    t_active = time.time()
    measured = await hold(t_active)
    t_stop = time.time()
    status = await owner_post(world, f"{base}/stop")
    done = await wait_recording(world, None, {"complete"}, 60)
    t_done = time.time()
    r = {
        "recording_id": row["id"],
        "start_answer": 303,
        "active_after_s": round(t_active - t_req, 2),
        "recorded_wall_s": round(t_stop - t_active, 1),
        "stop_answer": status,
        "complete_after_s": round(t_done - t_stop, 2),
        "status": done and done["status"],
        "recording_error": done and done["error"],
        "duration_ms": done and done["duration_ms"],
        "size_bytes": done and done["size_bytes"],
        "object_key": done and done["object_key"],
        "parts": done and done["parts"],
        **measured,
    }
    if not done or done["status"] != "complete":
        r["app_log"] = log.lines()
        for line in r["app_log"]:
            note(f"  app: {line}")
    path = object_path(r["object_key"]) if r["object_key"] else None
    r["object_bytes"] = path.stat().st_size if path else None
    r["ffprobe"] = ffprobe(path) if path else None
    warnings = [line for line in log.lines(50) if '"warn' in line.lower() or '"error' in line.lower()]
    if warnings:
        r["app_warnings"] = warnings[-10:]
    return r


def describe_probe(pr: dict | None) -> str:
    if not pr:
        return "no ffprobe"
    v, a = pr.get("video", {}), pr.get("audio", {})
    s = (f"{pr.get('format')}, {fmt(pr.get('duration_s'), 1)} s; video {v.get('codec_name')} "
         f"{v.get('width')}x{v.get('height')} {v.get('frames')} frames; audio {a.get('codec_name')} "
         f"{a.get('sample_rate')} Hz {a.get('frames')} frames")
    return s + (f"; ffprobe errors: {pr['errors'][:2]}" if pr.get("errors") else "")


async def fresh_app(world: World) -> int:
    """A fresh app process (as the fan-out phase's runs have), so that each recording's
    memory is measured from the same start, not on top of what an earlier one left
    in the allocator; warmed up by one owner's page (session, database, templates),
    then left to settle."""
    pid = world.start_app()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{world.base}/studio/streams/{world.stream_id}/recording",
                            headers=world.headers(world.owner, csrf=False)) as r:
            if r.status != 200:
                raise SystemExit(f"the recording panel answered {r.status}: {(await r.text())[:300]}")
    await asyncio.sleep(5)
    return pid


async def recording_phase(plan: Plan, world: World, host_room: rtc.Room) -> dict:
    say(f"built-in recording: the app's CPU and RSS over {plan.recording_window_s} s without and with one "
        f"recording of the publisher's {plan.width}x{plan.height} {plan.fps} fps stream; {plan.reps} runs, "
        "a fresh app process each"
        + (f", then one recording held up to {plan.recording_long_max_s} s" if plan.recording_long_max_s else ""))
    pub = await world.publish(host_room)
    log = AppLog()
    # The publisher's encoder ramps its bitrate up over its first seconds.
    await asyncio.sleep(5)
    runs = []
    for rep in range(plan.reps):
        pid = await fresh_app(world)
        idle = await app_window(world, plan.recording_window_s, pub)

        async def hold(t_active):
            # Joining, ICE, DTLS and the first keyframe are behind; then the window.
            await asyncio.sleep(max(0.0, t_active + plan.recording_warmup_s - time.time()))
            return {"with": await app_window(world, plan.recording_window_s, pub)}

        r = await record_once(world, log, hold, f"run {rep + 1}")
        r["without"], r["app_pid"] = idle, pid
        if "failed" not in r:
            await asyncio.sleep(3)
            r["after"] = await app_window(world, 5, pub)
            w, wo, af = r["with"], r["without"], r["after"]
            r["cpu_pct_delta"] = w["app_cpu_pct"] - wo["app_cpu_pct"]
            r["livekit_cpu_pct_delta"] = w["livekit_cpu_pct"] - wo["livekit_cpu_pct"]
            r["rss_kib_delta"] = w["rss_kib"]["median"] - wo["rss_kib"]["median"]
            note(f"run {rep + 1}: app CPU {fmt(wo['app_cpu_pct'])} % without, {fmt(w['app_cpu_pct'])} % with "
                 f"(+{fmt(r['cpu_pct_delta'])} % of one core); RSS {fmt(wo['rss_kib']['median'] / 1024, 1)} -> "
                 f"{fmt(w['rss_kib']['median'] / 1024, 1)} (max {fmt(w['rss_kib']['max'] / 1024, 1)}) -> "
                 f"{fmt(af['rss_kib']['median'] / 1024, 1)} MiB after; livekit-server "
                 f"{fmt(wo['livekit_cpu_pct'], 1)} -> {fmt(w['livekit_cpu_pct'], 1)} %; publisher "
                 f"{fmt(w.get('publisher_sent_fps'), 1)} fps {fmt(w.get('publisher_sent_kbps'), 0)} kbps")
            note(f"       active after {r['active_after_s']} s, complete {r['complete_after_s']} s after stop: "
                 f"{r['status']}, {fmt((r['duration_ms'] or 0) / 1000, 1)} s, {r['size_bytes']} bytes, "
                 f"{r['parts']} part(s); {describe_probe(r['ffprobe'])}")
        runs.append(r)
        for x in ("with", "without", "after"):
            if x in r:
                r[x].pop("rss_series", None)
    out = {"runs": runs, "window_s": plan.recording_window_s, "warmup_s": plan.recording_warmup_s,
           "publisher": Publisher.describe(plan)}

    if plan.recording_long_max_s:
        await fresh_app(world)
        base_rss = await app_window(world, 10, pub)
        pieces: list[dict] = []

        async def hold_long(t_active):
            await asyncio.sleep(max(0.0, t_active + plan.recording_warmup_s - time.time()))
            last = {"stored_ms": None, "done_at": None}

            def tick(elapsed, kib):
                row = latest_recording(world)
                if row and row["stored_ms"] is not None and row["stored_ms"] != last["stored_ms"]:
                    last["stored_ms"] = row["stored_ms"]
                    pieces.append({"at_s": round(time.time() - t_active, 1), "stored_ms": row["stored_ms"],
                                   "rss_kib": kib})
                    note(f"long recording: a 5 MiB part is in the bucket at {pieces[-1]['at_s']} s "
                         f"(RSS {fmt(kib / 1024, 1)} MiB)")
                    if len(pieces) >= 2 and last["done_at"] is None:
                        last["done_at"] = time.time()
                # 10 s past the second part's upload.
                return last["done_at"] is not None and time.time() > last["done_at"] + 10

            w = await app_window(world, plan.recording_long_max_s - plan.recording_warmup_s, pub, every=2, tick=tick)
            return {"with": w}

        r = await record_once(world, log, hold_long, "long recording")
        r["without"] = base_rss
        r["parts_uploaded_while_recording"] = pieces
        if "failed" not in r:
            await asyncio.sleep(3)
            r["after"] = await app_window(world, 5, pub)
            r["after"].pop("rss_series", None)
            w = r["with"]
            r["rss_peak_delta_kib"] = w["rss_kib"]["max"] - base_rss["rss_kib"]["median"]
            r["cpu_pct_delta"] = w["app_cpu_pct"] - base_rss["app_cpu_pct"]
            note(f"long recording: {r['recorded_wall_s']} s; RSS {fmt(base_rss['rss_kib']['median'] / 1024, 1)} MiB "
                 f"before, peak {fmt(w['rss_kib']['max'] / 1024, 1)} MiB (+{fmt(r['rss_peak_delta_kib'] / 1024, 1)}); "
                 f"app CPU {fmt(w['app_cpu_pct'])} % over the recording ({fmt(base_rss['app_cpu_pct'])} % before); "
                 f"{r['status']}, {r['size_bytes']} bytes, {r['parts']} part(s); {describe_probe(r['ffprobe'])}")
        base_rss.pop("rss_series", None)
        out["long"] = r
    return out


# ---- machine --------------------------------------------------------------------------


def machine_info() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))

    def run(*argv):
        try:
            return subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=REPO).stdout.strip()
        except OSError:
            return "unknown"

    commit = run("git", "rev-parse", "--short=12", "HEAD")
    if run("git", "status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    import importlib.metadata as md

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": run("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
        "app_commit": commit,
        "livekit_server": run(LIVEKIT_SERVER, "--version").split()[-1],
        "postgres": psql("postgres", "SHOW server_version"),
        "oha": run(OHA, "--version").split()[-1],
        "pgbench": run(pgbench_bin() or "pgbench", "--version"),
        "rustc": run("rustc", "--version"),
        "livekit_python_sdk": md.version("livekit"),
        "open_files_limit": run("sh", "-c", "ulimit -n"),
    }


# ---- main -----------------------------------------------------------------------------


async def run(plan: Plan, procs: Processes) -> dict:
    report: dict = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "plan": plan.as_dict(), "load_average": {"before": loadavg()}}
    t_start = time.time()
    say("machine")
    report["machine"] = machine_info()
    for k, v in report["machine"].items():
        note(f"{k}: {v}")
    note(f"load average before: {report['load_average']['before']}")

    world = World(plan, procs)
    say("services")
    world.start_services()
    world.migrate()
    world.seed()
    pid = world.start_app()
    note(f"stagepass on {world.base} (pid {pid})")
    report["settings"] = {k: v for k, v in world.settings.items() if "SECRET" not in k}
    report["settings"]["DATABASE_URL"] = f"postgres://…/{DB_NAME}"
    await world.go_live()
    note(f"stream {world.stream_id} is live in room {world.room_name}")

    # The host stays in the room (without publishing) until the media phase, as a
    # creator would: an empty room would close after LIVEKIT_EMPTY_TIMEOUT_SECONDS.
    async with aiohttp.ClientSession() as http:
        host = await world.token(http, world.owner, host=True)
    host_room = rtc.Room()
    await host_room.connect(host["url"], host["token"], rtc.RoomOptions(auto_subscribe=False))
    time.sleep(1)
    report["rss_idle_kib"] = rss_kib(world.app_pid)
    note(f"app RSS idle: {report['rss_idle_kib']} KiB")

    phases = report["phases"] = {}
    if ONLY:
        report["only_phases"] = ", ".join(sorted(ONLY))
    loads = report["load_average"]["phases"] = {}

    def wanted(name: str) -> bool:
        if ONLY and name not in ONLY:
            return False
        loads[name] = loadavg()
        return True

    if wanted("token"):
        peer_pid = world.start_peer()
        versions = peer_versions()
        report["express_peer"] = {
            "versions": versions,
            "settings": {k: v for k, v in world.peer_settings.items() if "SECRET" not in k},
        }
        report["express_peer"]["settings"]["DATABASE_URL"] = f"postgres://…/{DB_NAME}"
        note(f"Express peer on {world.peer_base} (pid {peer_pid}): Node.js {versions['node']}, "
             + ", ".join(f"{k} {versions[k]}" for k in PEER_PACKAGES))
        try:
            phases["token"] = token_phase(plan, world)
        finally:
            # Idle, it would still hold database connections through the later phases.
            world.stop_peer()
    if wanted("watch"):
        phases["watch"] = http_phase(plan, world, "watch page", f"/s/{world.stream_id}", "GET")
    if wanted("storm"):
        phases["storm"] = storm_phase(plan, world)
    if wanted("fanout"):
        phases["fanout"] = fanout_phase(plan, world)
    # Media before enforcement: the enforcement phase's 150 LiveKit clients,
    # removed by the server, would otherwise still cost this process CPU while
    # its subscribers decode video. The publisher stays for the enforcement phase.
    if wanted("media"):
        phases["media"] = await media_phase(plan, world, host_room)
    # With the media phase's subscribers gone: one Chromium viewer on the watch page.
    if wanted("glass"):
        import glass  # bench/glass.py

        phases["glass"] = await glass.glass_phase(plan, world, host_room)
    # After media (its subscribers are gone) and before enforcement (its 150 clients
    # joining and being removed would cost the app CPU in the windows).
    if wanted("recording"):
        phases["recording"] = await recording_phase(plan, world, host_room)
    if wanted("enforcement"):
        lk = api.LiveKitAPI(world.lk_url, world.lk_key, world.lk_secret)
        try:
            phases["enforcement"] = await enforcement_phase(plan, world, lk)
        finally:
            await lk.aclose()
    # Last: it starts a fresh app process of its own and leaves it loaded.
    if wanted("soak"):
        import soak  # bench/soak.py

        say("soak: a fresh app process, mixed load, then idle: does memory come back?")
        phases["soak"] = await soak.Soak(world, plan, OHA, OUT).run()
    if world.publisher:
        world.publisher.stop()
    else:  # a publisher takes the host's place (World.publish)
        await host_room.disconnect()
    report["load_average"]["after"] = loadavg()
    report["duration_s"] = round(time.time() - t_start)
    return report


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.log"):
        old.unlink()
    # The SDK's own logs (its native core's warnings when rooms close) go to a file.
    logging.basicConfig(filename=OUT / "lk_clients.log", level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    plan = Plan(QUICK)
    procs = Processes()

    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    try:
        report = asyncio.run(run(plan, procs))
    except KeyboardInterrupt:
        print("interrupted; stopping what the bench started", file=sys.stderr)
        raise SystemExit(130)
    finally:
        procs.stop_all()
    import report as report_md  # bench/report.py

    (OUT / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (OUT / "report.md").write_text(report_md.markdown(report, GOALS))
    say(f"report: {OUT / 'report.md'} and {OUT / 'report.json'} ({report['duration_s']} s)")
    print()
    print((OUT / "report.md").read_text())


if __name__ == "__main__":
    main()
