"""make bench's glass phase: glass-to-glass latency through our own watch page.

The host's publisher (bench/publisher.py) stamps every frame with its capture
time; headless Chromium, signed in as a viewer with a pass, opens the watch
page, and bench/glass.js reads the stamp of every frame the player presents
(requestVideoFrameCallback): display time minus capture time. Chromium is
driven over chromedriver's W3C WebDriver HTTP API (no extra package).

Reported: p50, p95, p99 and max over every frame of the window, frames read
and frames whose stamp did not read back. Then the same under 2 % loss and
100 ms round trip on LiveKit's media port, where the kernel has the netem
qdisc (`tc`); where it has not, the report says it was skipped, and why.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import aiohttp

# bench.py runs as the script, and imports this module inside its run: its
# helpers (say, note, pct, free_port, wait_port, OUT, REPO) are __main__'s.
import __main__ as bench


class WebDriver:
    """The few W3C WebDriver commands the phase needs, over aiohttp."""

    def __init__(self, base: str, http: aiohttp.ClientSession):
        self.base, self.http, self.session = base, http, None

    async def _call(self, method: str, path: str, body: dict | None = None):
        url = f"{self.base}/session" + (f"/{self.session}{path}" if self.session else path)
        async with self.http.request(method, url, json=body) as r:
            data = await r.json(content_type=None)
            if r.status != 200:
                raise RuntimeError(f"WebDriver {method} {path}: {r.status} {data}")
            return data.get("value")

    async def start(self, chromium: str) -> None:
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--autoplay-policy=no-user-gesture-required", "--window-size=1280,800", "--no-first-run"]
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": {"binary": chromium, "args": args}}}}
        value = await self._call("POST", "", caps)
        self.session = value["sessionId"]

    async def goto(self, url: str) -> None:
        await self._call("POST", "/url", {"url": url})

    async def cookie(self, name: str, value: str) -> None:
        await self._call("POST", "/cookie", {"cookie": {"name": name, "value": value, "path": "/"}})

    async def js(self, script: str):
        return await self._call("POST", "/execute/sync", {"script": script, "args": []})

    async def quit(self) -> None:
        if self.session:
            try:
                await self._call("DELETE", "")
            finally:
                self.session = None


def summary(samples: list[float], frames: int, bad: int, seconds: float) -> dict:
    s = sorted(samples)
    return {
        "frames": frames,
        "unreadable": bad,
        "samples": len(s),
        "window_s": round(seconds, 1),
        "p50_ms": bench.pct(s, 0.5),
        "p95_ms": bench.pct(s, 0.95),
        "p99_ms": bench.pct(s, 0.99),
        "max_ms": s[-1] if s else None,
    }


async def measure(driver: WebDriver, seconds: float) -> dict:
    """Glass to glass over `seconds` of frames (after a reset of the samples)."""
    await driver.js("Object.assign(window.glass, { samples: [], frames: 0, bad: 0, early: 0 }); return true")
    t0 = time.time()
    await asyncio.sleep(seconds)
    g = await driver.js("return window.glass")
    return {**summary(g["samples"], g["frames"], g["bad"], time.time() - t0), "early": g["early"]}


def netem(rtc_udp: int, on: bool) -> str | None:
    """Delays (50 ms each way) and drops (2 %) the packets to and from LiveKit's
    UDP media port on loopback; None when done, else why it could not be."""
    def tc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["tc", *args], capture_output=True, text=True)

    if not on:
        tc("qdisc", "del", "dev", "lo", "root")
        return None
    if not shutil.which("tc"):
        return "tc (iproute2) is not installed"
    steps = [
        ("qdisc", "add", "dev", "lo", "root", "handle", "1:", "prio"),
        ("qdisc", "add", "dev", "lo", "parent", "1:3", "handle", "30:", "netem", "delay", "50ms", "loss", "2%"),
        ("filter", "add", "dev", "lo", "protocol", "ip", "parent", "1:0", "prio", "3", "u32",
         "match", "ip", "dport", str(rtc_udp), "0xffff", "flowid", "1:3"),
        ("filter", "add", "dev", "lo", "protocol", "ip", "parent", "1:0", "prio", "3", "u32",
         "match", "ip", "sport", str(rtc_udp), "0xffff", "flowid", "1:3"),
    ]
    for step in steps:
        r = tc(*step)
        if r.returncode != 0:
            tc("qdisc", "del", "dev", "lo", "root")
            why = r.stderr.strip() or f"exit status {r.returncode}"
            return f"this kernel cannot shape loopback traffic: `tc {' '.join(step)}` answered “{why}”"
    return None


async def glass_phase(plan, world, host_room) -> dict:
    say, note = bench.say, bench.note
    say("glass to glass: stamped frames from the host's publisher, read back on the watch page in Chromium")
    chromedriver, chromium = shutil.which("chromedriver"), shutil.which("chromium")
    if not chromedriver or not chromium:
        note("Chromium or chromedriver missing: skipped (scripts/setup installs both)")
        return {"skipped": "Chromium or chromedriver is not installed"}
    await world.publish(host_room)
    port = bench.free_port()
    driver_proc = world.procs.start("chromedriver", [chromedriver, f"--port={port}"])
    bench.wait_port(port, driver_proc, "chromedriver")
    result: dict = {"window_s": plan.glass_window_s}
    async with aiohttp.ClientSession() as http:
        driver = WebDriver(f"http://127.0.0.1:{port}", http)
        try:
            await driver.start(chromium)
            viewer = world.http_viewer
            await driver.goto(f"{world.base}/healthz")
            await driver.cookie("stagepass_session", viewer.cookie)
            await driver.goto(f"{world.base}/s/{world.stream_id}")
            deadline = time.time() + 30
            while time.time() < deadline:
                playing = await driver.js(
                    "const v = document.getElementById('stream-video'); return !!v && v.videoWidth > 0 && v.currentTime > 0")
                if playing:
                    break
                await asyncio.sleep(0.5)
            else:
                raise RuntimeError("the watch page did not play within 30 s")
            await driver.js((bench.REPO / "bench" / "glass.js").read_text() + "\nreturn true")
            await asyncio.sleep(3)  # past the first keyframe and the jitter buffer's start
            result["loopback"] = await measure(driver, plan.glass_window_s)
            lo = result["loopback"]
            note(f"loopback: p50 {lo['p50_ms']} ms, p95 {lo['p95_ms']} ms, p99 {lo['p99_ms']} ms "
                 f"over {lo['samples']} frames ({lo['unreadable']} unreadable)")

            why = netem(world.rtc_udp, True)
            if why:
                result["impaired"] = {"skipped": why}
                note(f"2 % loss and 100 ms RTT: skipped ({why})")
            else:
                try:
                    await asyncio.sleep(3)
                    result["impaired"] = {"loss_pct": 2, "rtt_ms": 100, **await measure(driver, plan.glass_window_s)}
                    im = result["impaired"]
                    note(f"2 % loss, 100 ms RTT: p50 {im['p50_ms']} ms, p95 {im['p95_ms']} ms, p99 {im['p99_ms']} ms")
                finally:
                    netem(world.rtc_udp, False)
        except Exception as e:  # a broken phase is reported, not fatal to the run
            result["error"] = str(e)
            note(f"glass phase failed: {e}")
        finally:
            await driver.quit()
    world.procs.stop("chromedriver")
    return result
