"""make bench's soak phase: does the app give memory back after a long mixed load?

A fresh app process is warmed up (every kind of request below once) and left to
settle; its idle RSS is measured. Then, for BENCH_SOAK_S seconds (600; 120 with
BENCH_QUICK=1), everything at once:

  oha        the home page, the watch page, the studio's stream page and the
             token endpoint, each at a fixed rate
  sse        chat streams (`GET /s/{id}/chat/events`) opened and closed: a churn of
             streams held 1-15 s, and every 60 s a burst of 300 opened together
  chat       chat posts from viewers in turn (each stays under 5 per 10 s)
  uploads    thumbnails and avatars from the owner: small images, images near the
             5 MiB upload limit, and 39-megapixel images (a small file whose decode
             is large); now and then four at once
  oversized  bodies over the limits: a 6 MiB upload, a 3 MiB form, a 10 MiB webhook
  malformed  raw-socket requests: garbage, huge headers, short bodies, bad chunking,
             bad paths and multipart, an HTTP/2 preface, a half-sent request
  signin     wrong passwords (unknown addresses, so argon2 runs on a dummy hash) from
             rotating 127.0.0.x source addresses, so that not all are refused by the
             per-address limit

Then the load stops; after BENCH_SOAK_IDLE_S (30) seconds the RSS is measured
again. The goal: RSS after the load within 2x of idle. RSS (VmRSS) is sampled
every second and /proc/PID/smaps_rollup every 10 s, for the report.

BENCH_SOAK_MIX=uploads,signin runs only those kinds (for finding what holds memory);
BENCH_APP_ENV (in bench.py) passes allocator settings such as MALLOC_ARENA_MAX.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import secrets
import struct
import subprocess
import time
import zlib
from pathlib import Path

import aiohttp

KINDS = ("oha", "sse", "chat", "uploads", "oversized", "malformed", "signin")
GOAL_RATIO = 2.0


def note(msg: str) -> None:
    print(f"    {msg}", flush=True)


def proc_status(pid: int) -> dict:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "VmData"):
                out[k] = int(v.split()[0])
            elif k == "Threads":
                out[k] = int(v)
    except OSError:
        pass
    return out


def smaps_rollup(pid: int) -> dict:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            k, _, v = line.partition(":")
            parts = v.split()
            if parts and parts[-1] == "kB":
                out[k.strip()] = int(parts[0])
    except OSError:
        pass
    return out


def anon_mappings(pid: int) -> dict:
    """The anonymous mappings by resident size (what the allocator holds): count of
    mappings, and the resident KiB of the biggest few, from /proc/PID/smaps."""
    maps, cur = [], None
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return {}
    for line in text.splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            name = head[5] if len(head) > 5 else ""
            cur = {"size_kib": (hi - lo) // 1024, "name": name, "rss_kib": 0}
            maps.append(cur)
        elif cur is not None and line.startswith("Rss:"):
            cur["rss_kib"] = int(line.split()[1])
    anon = [m for m in maps if m["name"] in ("", "[heap]")]
    anon.sort(key=lambda m: -m["rss_kib"])
    return {
        "anon_mappings": len(anon),
        "anon_rss_kib": sum(m["rss_kib"] for m in anon),
        "heap_rss_kib": sum(m["rss_kib"] for m in anon if m["name"] == "[heap]"),
        # glibc's thread arenas are 64 MiB reservations (HEAP_MAX_SIZE).
        "arena_like_64mib": sum(1 for m in anon if m["size_kib"] in (65536, 131072) or 60000 <= m["size_kib"] <= 65536),
        "largest": [{"size_kib": m["size_kib"], "rss_kib": m["rss_kib"], "name": m["name"] or "anon"} for m in anon[:8]],
    }


# ---- images --------------------------------------------------------------------


def _png(width: int, height: int, channels: int, row) -> bytes:
    """A PNG, 8-bit RGB or RGBA, with the raw pixel rows `row(y)`."""
    comp = zlib.compressobj(6)
    data = bytearray()
    for y in range(height):
        data += comp.compress(b"\x00" + row(y))
    data += comp.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    color = {3: 2, 4: 6}[channels]
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0))
            + chunk(b"IDAT", bytes(data)) + chunk(b"IEND", b""))


def make_images(out: Path) -> dict[str, bytes]:
    """The uploads: a small JPEG, a noise PNG and a noise JPEG near the 5 MiB limit,
    and a 39-megapixel RGBA PNG and JPEG of smooth patterns (small files, big decodes).
    Made once, kept in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    names = ["small.jpg", "noise-1280x1280.png", "noise.jpg", "gradient-7000x5600.png", "testsrc-7000x5600.jpg"]
    if all((out / n).is_file() for n in names):
        return {n: (out / n).read_bytes() for n in names}
    rng = random.Random(7)
    images = {}
    # 1,280 x 1,280 RGB noise: 4.9 MB of pixels zlib cannot shrink, under 5 MiB.
    images["noise-1280x1280.png"] = _png(1280, 1280, 3, lambda y: rng.randbytes(1280 * 3))
    # 7,000 x 5,600 RGBA (39.2 MP, under the 40 MP limit): a gradient, a small file.
    w, h = 7000, 5600
    rows = {}

    def gradient(y: int) -> bytes:
        g = y * 255 // h
        if g not in rows:
            row = bytearray(w * 4)
            row[0::4] = bytes(x * 255 // w for x in range(w))
            row[1::4] = bytes([g]) * w
            row[2::4] = b"\x80" * w
            row[3::4] = b"\xff" * w
            rows[g] = bytes(row)
        return rows[g]

    images["gradient-7000x5600.png"] = _png(w, h, 4, gradient)

    def ffmpeg_jpeg(name: str, source: str, q: int) -> bytes:
        path = out / name
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source,
                        "-frames:v", "1", "-q:v", str(q), str(path)], check=True)
        return path.read_bytes()

    images["small.jpg"] = ffmpeg_jpeg("small.jpg", "testsrc2=s=800x450", 4)
    images["testsrc-7000x5600.jpg"] = ffmpeg_jpeg("testsrc-7000x5600.jpg", "testsrc2=s=7000x5600", 10)
    # Noise JPEG: as large as fits under 5 MiB (with the form around it).
    for size in ("2700x2000", "2500x1850", "2300x1700", "2000x1500", "1600x1200"):
        data = ffmpeg_jpeg("noise.jpg", f"color=c=gray:s={size},noise=alls=100:allf=t", 2)
        if len(data) < 5 * 1024 * 1024 - 4096:
            images["noise.jpg"] = data
            break
    for name, data in images.items():
        (out / name).write_bytes(data)
    return images


# ---- the load ------------------------------------------------------------------


class Counts:
    def __init__(self):
        self.by_kind: dict[str, dict[str, int]] = {}

    def add(self, kind: str, what) -> None:
        d = self.by_kind.setdefault(kind, {})
        d[str(what)] = d.get(str(what), 0) + 1


class Soak:
    def __init__(self, world, plan, oha_bin: Path, out: Path):
        self.world, self.plan, self.oha_bin, self.out = world, plan, oha_bin, out
        self.seconds = int(os.environ.get("BENCH_SOAK_S", 120 if plan.quick else 600))
        self.idle_wait_s = int(os.environ.get("BENCH_SOAK_IDLE_S", 30))
        mix = os.environ.get("BENCH_SOAK_MIX", "")
        self.kinds = [k for k in KINDS if not mix or k in mix.split(",")]
        self.counts = Counts()
        self.stop = asyncio.Event()
        self.images: dict[str, bytes] = {}
        self.rss: list = []
        self.smaps: list = []
        self.sse_open = 0
        self.sse_peak = 0
        self.viewers = list(world.subscribers)
        self.next_viewer = 0

    def viewer(self):
        v = self.viewers[self.next_viewer % len(self.viewers)]
        self.next_viewer += 1
        return v

    # -- requests

    async def request(self, http, kind, method, path, who=None, csrf=True, **kw):
        headers = dict(kw.pop("headers", {}))
        if who is not None:
            headers.update(self.world.headers(who, csrf=csrf))
        try:
            async with http.request(method, self.world.base + path, headers=headers, allow_redirects=False,
                                    **kw) as r:
                await r.read()
                self.counts.add(kind, r.status)
                return r.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            self.counts.add(kind, type(e).__name__)
            return None

    async def upload(self, http, kind: str, name: str, data: bytes, avatar: bool):
        w = self.world
        path = "/studio/channels/bench/avatar" if avatar else f"/studio/streams/{w.stream_id}/thumbnail"
        form = aiohttp.FormData()
        form.add_field("csrf_token", w.owner.csrf)
        form.add_field("avatar" if avatar else "thumbnail", data, filename=name,
                       content_type="application/octet-stream")
        return await self.request(http, kind, "POST", path, w.owner, csrf=False, data=form,
                                  headers={"HX-Request": "true"}, timeout=aiohttp.ClientTimeout(total=60))

    # -- workers

    async def every(self, interval: float, job) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                await job()
            except Exception as e:  # a failing kind must not end the soak
                self.counts.add("worker_errors", f"{type(e).__name__}: {str(e)[:80]}")
            left = interval - (time.monotonic() - t0)
            if left > 0:
                try:
                    await asyncio.wait_for(self.stop.wait(), left)
                except asyncio.TimeoutError:
                    pass

    async def sse_one(self, http, hold_s: float) -> None:
        v = self.viewer()
        try:
            async with http.get(f"{self.world.base}/s/{self.world.stream_id}/chat/events",
                                headers={**self.world.headers(v, csrf=False), "Accept": "text/event-stream"},
                                timeout=aiohttp.ClientTimeout(total=hold_s + 30, sock_connect=10)) as r:
                self.counts.add("sse", r.status)
                if r.status != 200:
                    return
                self.sse_open += 1
                self.sse_peak = max(self.sse_peak, self.sse_open)
                try:
                    deadline = time.monotonic() + hold_s
                    while time.monotonic() < deadline and not self.stop.is_set():
                        try:
                            await asyncio.wait_for(r.content.readany(), max(0.1, deadline - time.monotonic()))
                        except asyncio.TimeoutError:
                            break
                finally:
                    self.sse_open -= 1
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            self.counts.add("sse", type(e).__name__)

    async def sse_churn(self, http) -> None:
        # About 100 streams open at any moment, each held 1-15 s.
        async def lane():
            while not self.stop.is_set():
                await self.sse_one(http, random.uniform(1, 15))

        await asyncio.gather(*(lane() for _ in range(100)))

    async def sse_burst(self, http) -> None:
        await asyncio.gather(*(self.sse_one(http, random.uniform(2, 5)) for _ in range(300)))

    async def chat(self, http) -> None:
        v = self.viewer()
        await self.request(http, "chat", "POST", f"/s/{self.world.stream_id}/chat", v,
                           data={"body": f"soak {secrets.token_hex(8)} " + "x" * random.randint(0, 400)},
                           headers={"HX-Request": "true"})

    async def uploads(self, http) -> None:
        names = list(self.images)
        name = random.choice(names)
        await self.upload(http, "uploads", name, self.images[name], avatar=random.random() < 0.4)

    async def upload_burst(self, http) -> None:
        big = [n for n in self.images if n != "small.jpg"]
        await asyncio.gather(*(self.upload(http, "uploads", n, self.images[n], avatar=i % 2 == 1)
                               for i, n in enumerate((big * 2)[:4])))

    async def oversized(self, http) -> None:
        w = self.world
        which = random.randrange(3)
        if which == 0:
            await self.upload(http, "oversized", "big.png", b"\x89PNG\r\n\x1a\n" + os.urandom(6 * 1024 * 1024),
                              avatar=False)
        elif which == 1:
            await self.request(http, "oversized", "POST", f"/s/{w.stream_id}/chat", self.viewer(), csrf=False,
                               data={"csrf_token": "x", "body": "y" * (3 * 1024 * 1024)})
        else:
            await self.request(http, "oversized", "POST", "/webhooks/livekit",
                               data=b"{" + b" " * (10 * 1024 * 1024) + b"}",
                               headers={"Content-Type": "application/webhook+json", "Authorization": "x.y.z"})

    def malformed_requests(self) -> list[bytes]:
        s, host = self.world.stream_id, f"127.0.0.1:{self.world.app_port}"
        v = self.viewers[0]
        cookie = f"Cookie: stagepass_session={v.cookie}\r\n"
        return [
            b"GARBAGE\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(200)) + b"\r\n",
            f"POST /s/{s}/chat HTTP/1.1\r\nHost: {host}\r\n{cookie}Content-Length: 100000\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n\r\nbody=short".encode(),
            b"POST /signin HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"POST /signin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzzz\r\nhello\r\n",
            b"GET /%ff%fe%00 HTTP/1.1\r\nHost: x\r\n\r\n",
            f"GET /s/{'9' * 40} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
            b"GET /s/-1/chat/events HTTP/1.1\r\nHost: x\r\n\r\n",
            f"GET /s/{s}/chat/events HTTP/1.1\r\nHost: {host}\r\n{cookie}Last-Event-ID: zz\xff\r\n\r\n".encode("latin-1"),
            f"POST /studio/streams/{s}/thumbnail HTTP/1.1\r\nHost: {host}\r\n{cookie}"
            f"Content-Type: multipart/form-data; boundary=XX\r\nX-CSRF-Token: {v.csrf}\r\nContent-Length: 30\r\n\r\n"
            "--XX\r\nbroken multipart".encode(),
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(64),
            f"GET /s/{s} HTTP/1.1\r\nHost: {host}\r\nCookie: stagepass_session={'A' * 5000}\r\n\r\n".encode(),
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
            b"GET / HTTP/9.9\r\n\r\n",
            f"POST /s/{s}/token HTTP/1.1\r\nHost: {host}\r\n{cookie}X-CSRF-Token: {v.csrf}\r\n"
            "Content-Length: 10\r\n\r\n".encode(),  # half-sent: the body never comes
        ]

    async def malformed(self) -> None:
        reqs = self.malformed_requests()
        i = random.randrange(len(reqs))
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.world.app_port), 5)
            writer.write(reqs[i])
            await writer.drain()
            try:
                head = await asyncio.wait_for(reader.read(64), 2 if i == len(reqs) - 1 else 10)
                self.counts.add("malformed", head.split(b"\r\n")[0][9:12].decode(errors="replace") or "closed")
            except asyncio.TimeoutError:
                self.counts.add("malformed", "held")
            writer.close()
        except (OSError, asyncio.TimeoutError) as e:
            self.counts.add("malformed", type(e).__name__)

    async def signin(self, sessions) -> None:
        v = self.viewer()
        http = random.choice(sessions)
        await self.request(http, "signin", "POST", "/signin", v,
                           data={"email": f"nobody-{secrets.token_hex(4)}@bench.invalid", "password": "wrong-password-123"})

    # -- sampling

    async def sample(self, t0: float) -> None:
        pid = self.world.app_pid
        n = 0
        while not self.stop.is_set():
            st = proc_status(pid)
            self.rss.append([round(time.time() - t0, 1), st.get("VmRSS"), st.get("Threads"), self.sse_open])
            if n % 10 == 0:
                self.smaps.append({"t": round(time.time() - t0, 1), **smaps_rollup(pid)})
            n += 1
            try:
                await asyncio.wait_for(self.stop.wait(), 1.0)
            except asyncio.TimeoutError:
                pass

    async def window(self, seconds: float) -> dict:
        """RSS sampled every second over `seconds`: median, min, max."""
        xs = []
        end = time.time() + seconds
        while time.time() < end:
            xs.append(proc_status(self.world.app_pid).get("VmRSS"))
            await asyncio.sleep(1)
        xs = sorted(x for x in xs if x is not None)
        return {"median_kib": xs[len(xs) // 2], "min_kib": xs[0], "max_kib": xs[-1], "samples": len(xs)}

    def oha(self, name: str, path: str, method: str, rate: int, who, csrf: bool) -> subprocess.Popen:
        argv = [str(self.oha_bin), "-z", f"{self.seconds}s", "-q", str(rate), "-c", "20", "--no-tui",
                "--output-format", "json", "-m", method]
        if who is not None:
            for k, v in self.world.headers(who, csrf=csrf).items():
                argv += ["-H", f"{k}: {v}"]
        argv.append(self.world.base + path)
        return subprocess.Popen(argv, stdout=open(self.out / f"soak-oha-{name}.json", "w"),
                                stderr=subprocess.DEVNULL)

    # -- the phase

    async def warm_up(self) -> None:
        w = self.world
        async with aiohttp.ClientSession() as http:
            for path, who in (("/", w.http_viewer), (f"/s/{w.stream_id}", w.http_viewer),
                              (f"/studio/streams/{w.stream_id}", w.owner), ("/signin", None)):
                await self.request(http, "warmup", "GET", path, who, csrf=False)
            await self.request(http, "warmup", "POST", f"/s/{w.stream_id}/token", w.http_viewer)
            await self.chat(http)
            await self.sse_one(http, 1)
            await self.upload(http, "warmup", "small.jpg", self.images["small.jpg"], avatar=False)
            await self.upload(http, "warmup", "small.jpg", self.images["small.jpg"], avatar=True)
            await self.signin([http])

    async def pool_size(self) -> int | None:
        """The app's database connections (its /metrics gauge): the pool grows under
        load and keeps its connections, each with its buffers and statement cache."""
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(self.world.base + "/metrics") as r:
                    for line in (await r.text()).splitlines():
                        if line.startswith("db_pool_connections "):
                            return int(float(line.split()[1]))
        except (aiohttp.ClientError, ValueError):
            pass
        return None

    async def run(self) -> dict:
        self.images = make_images(self.out / "soak-images")
        sizes = {k: len(v) for k, v in self.images.items()}
        note(f"images: {', '.join(f'{k} ({v / 1e6:.2f} MB)' for k, v in sizes.items())}")
        pid = self.world.start_app()
        await asyncio.sleep(1)
        status_fresh = proc_status(pid)
        await self.warm_up()
        note(f"warm-up: {self.counts.by_kind.get('warmup')}")
        await asyncio.sleep(10)
        idle = await self.window(10)
        smaps_idle = smaps_rollup(pid)
        anon_idle = anon_mappings(pid)
        pool_idle = await self.pool_size()
        note(f"fresh {status_fresh.get('VmRSS')} KiB; idle after warm-up {idle['median_kib']} KiB; "
             f"{self.seconds} s of load: {', '.join(self.kinds)}")

        t0 = time.time()
        w = self.world
        ohas = {}
        if "oha" in self.kinds:
            ohas = {
                "token": self.oha("token", f"/s/{w.stream_id}/token", "POST", 100, w.http_viewer, True),
                "watch": self.oha("watch", f"/s/{w.stream_id}", "GET", 40, w.http_viewer, False),
                "home": self.oha("home", "/", "GET", 20, w.http_viewer, False),
                "studio": self.oha("studio", f"/studio/streams/{w.stream_id}", "GET", 10, w.owner, False),
            }
        conn = aiohttp.TCPConnector(limit=0)
        # Sign-in failures from 50 source addresses (127.0.0.0/8 is all loopback).
        signin_sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(f"127.0.0.{i}", 0)))
                           for i in range(2, 52)]
        async with aiohttp.ClientSession(connector=conn) as http:
            jobs = [self.sample(t0)]
            if "sse" in self.kinds:
                jobs += [self.sse_churn(http), self.every(60, lambda: self.sse_burst(http))]
            if "chat" in self.kinds:
                jobs.append(self.every(0.2, lambda: self.chat(http)))
            if "uploads" in self.kinds:
                jobs += [self.every(1.5, lambda: self.uploads(http)), self.every(30, lambda: self.upload_burst(http))]
            if "oversized" in self.kinds:
                jobs.append(self.every(2, lambda: self.oversized(http)))
            if "malformed" in self.kinds:
                jobs.append(self.every(0.25, self.malformed))
            if "signin" in self.kinds:
                jobs.append(self.every(0.2, lambda: self.signin(signin_sessions)))

            async def timer():
                last = time.time()
                while time.time() - t0 < self.seconds:
                    await asyncio.sleep(1)
                    if time.time() - last >= 60:
                        last = time.time()
                        st = proc_status(pid)
                        note(f"{time.time() - t0:.0f} s: RSS {st.get('VmRSS')} KiB, {st.get('Threads')} threads, "
                             f"{self.sse_open} SSE streams open")
                self.stop.set()

            await asyncio.gather(timer(), *jobs)
        for s in signin_sessions:
            await s.close()
        oha_results = {}
        for name, p in ohas.items():
            p.wait(timeout=120)
            try:
                j = json.loads((self.out / f"soak-oha-{name}.json").read_text())
                oha_results[name] = {"requests_per_second": j["summary"].get("requestsPerSec"),
                                     "status_codes": j.get("statusCodeDistribution"),
                                     "errors": j.get("errorDistribution")}
            except (OSError, ValueError, KeyError):
                oha_results[name] = None
        end_load = proc_status(pid)
        smaps_end = smaps_rollup(pid)
        anon_end = anon_mappings(pid)
        peak = max((x[1] for x in self.rss if x[1]), default=None)
        note(f"load done: RSS {end_load.get('VmRSS')} KiB (peak sampled {peak}, VmHWM {end_load.get('VmHWM')}); "
             f"{self.sse_peak} SSE streams at most; waiting {self.idle_wait_s} s")

        # The idle wait: RSS every second.
        t1 = time.time()
        after_series = []
        while time.time() - t1 < self.idle_wait_s:
            after_series.append([round(time.time() - t1, 1), proc_status(pid).get("VmRSS")])
            await asyncio.sleep(1)
        after = await self.window(10)
        smaps_after = smaps_rollup(pid)
        anon_after = anon_mappings(pid)
        status_after = proc_status(pid)
        pool_after = await self.pool_size()
        ratio = after["median_kib"] / idle["median_kib"]
        note(f"after {self.idle_wait_s} s idle: RSS {after['median_kib']} KiB = {ratio:.2f} x idle "
             f"({idle['median_kib']} KiB); goal within {GOAL_RATIO:.0f} x: {'met' if ratio <= GOAL_RATIO else 'MISSED'}")
        note(f"database connections: {pool_idle} idle, {pool_after} after")
        for kind, c in sorted(self.counts.by_kind.items()):
            note(f"{kind}: {c}")
        for name, o in oha_results.items():
            note(f"oha {name}: {o and round(o['requests_per_second'] or 0)} req/s, {o and o['status_codes']}")
        return {
            "seconds": self.seconds,
            "idle_wait_s": self.idle_wait_s,
            "kinds": self.kinds,
            "images": sizes,
            "rss_fresh_kib": status_fresh.get("VmRSS"),
            "idle": idle,
            "end_of_load": end_load,
            "peak_rss_kib": peak,
            "after": after,
            "status_after": status_after,
            "ratio": ratio,
            "goal_ratio": GOAL_RATIO,
            "met": ratio <= GOAL_RATIO,
            "smaps_rollup": {"idle": smaps_idle, "end_of_load": smaps_end, "after": smaps_after},
            "anon": {"idle": anon_idle, "end_of_load": anon_end, "after": anon_after},
            "sse_peak_open": self.sse_peak,
            "db_connections": {"idle": pool_idle, "after": pool_after},
            "counts": self.counts.by_kind,
            "oha": oha_results,
            "rss_series": self.rss[::5],
            "after_series": after_series,
            "smaps_series": self.smaps,
        }
