"""The publisher of make bench's real-media phase (LiveKit's Python SDK).

Usage: publisher.py URL TOKEN WIDTH HEIGHT FPS [stamp]

Publishes one camera track of synthetic video (a textured pattern scrolling
sideways, so the encoder has real work and motion to code) and one microphone
track (a 440 Hz tone), until its standard input closes. Every 2 seconds it
prints one JSON line with its outbound video statistics. It runs as a process
of its own so that the subscribers in the bench driver do not steal its
Python thread's time and make it send fewer frames than it should.

With `stamp`, every frame carries its capture time (the wall clock, in ms) in
its top band: 40 square blocks across the frame, black or white, most
significant bit first: 32 bits of the time (modulo 2^32) and an 8-bit sum of
its bytes. bench/glass.js reads it back on the watch page, so glass-to-glass
latency is measured through our own pages.
"""

import asyncio
import json
import math
import sys
import time

import numpy as np
from livekit import rtc


def say(**fields):
    print(json.dumps(fields), flush=True)


def texture(width: int, height: int) -> np.ndarray:
    """A blocky random luma texture, twice as wide as the frame (it scrolls)."""
    rng = np.random.default_rng(7)
    blocks = rng.integers(40, 216, size=(height // 8 + 1, (2 * width) // 8 + 1), dtype=np.uint8)
    return np.kron(blocks, np.ones((8, 8), dtype=np.uint8))[:height, : 2 * width]


STAMP_BITS = 40


def stamp(y: np.ndarray, ms: int) -> None:
    """Writes `ms` into the top band of the luma plane `y` (see the module's doc)."""
    value = ms & 0xFFFFFFFF
    word = (value << 8) | (sum(value.to_bytes(4, "big")) & 0xFF)
    block = y.shape[1] // STAMP_BITS
    for i in range(STAMP_BITS):
        bit = (word >> (STAMP_BITS - 1 - i)) & 1
        y[:block, i * block : (i + 1) * block] = 235 if bit else 16


async def video(source: rtc.VideoSource, width: int, height: int, fps: int, counter: dict,
                stamped: bool = False) -> None:
    luma = texture(width, height)
    chroma = np.full((width * height) // 2, 128, dtype=np.uint8)
    period = 1.0 / fps
    start = time.monotonic()
    n = 0
    while True:
        shift = (n * 4) % width
        y = np.array(luma[:, shift : shift + width], order="C")  # a copy: stamping writes to it
        if stamped:
            stamp(y, int(time.time() * 1000))
        data = np.concatenate([y.reshape(-1), chroma]).tobytes()
        frame = rtc.VideoFrame(width, height, rtc.VideoBufferType.I420, data)
        source.capture_frame(frame, timestamp_us=int(n * period * 1e6))
        counter["captured"] += 1
        n += 1
        # Paced against the start, so a late frame does not slow the rest.
        await asyncio.sleep(max(0.0, start + n * period - time.monotonic()))


async def audio(source: rtc.AudioSource) -> None:
    rate, chunk = 48000, 480  # 10 ms
    t = np.arange(chunk) / rate
    n = 0
    while True:
        samples = (0.2 * 32767 * np.sin(2 * math.pi * 440 * (t + n * chunk / rate))).astype(np.int16)
        frame = rtc.AudioFrame(samples.tobytes(), rate, 1, chunk)
        await source.capture_frame(frame)  # paced by the source's queue
        n += 1


async def stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def main(url: str, token: str, width: int, height: int, fps: int, stamped: bool) -> None:
    room = rtc.Room()
    await room.connect(url, token)
    vsource = rtc.VideoSource(width, height)
    vtrack = rtc.LocalVideoTrack.create_video_track("camera", vsource)
    await room.local_participant.publish_track(
        vtrack,
        rtc.TrackPublishOptions(
            source=rtc.TrackSource.SOURCE_CAMERA,
            simulcast=False,
            video_codec=rtc.VideoCodec.VP8,
            video_encoding=rtc.VideoEncoding(max_bitrate=1_000_000, max_framerate=fps),
        ),
    )
    asource = rtc.AudioSource(48000, 1)
    atrack = rtc.LocalAudioTrack.create_audio_track("mic", asource)
    await room.local_participant.publish_track(
        atrack, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    )
    say(published=True, identity=room.local_participant.identity)

    counter = {"captured": 0}
    tasks = [
        asyncio.create_task(video(vsource, width, height, fps, counter, stamped)),
        asyncio.create_task(audio(asource)),
    ]
    closed = asyncio.create_task(stdin_closed())
    while not closed.done():
        await asyncio.wait([closed], timeout=2.0)
        out = {"frames_encoded": 0, "frames_sent": 0, "bytes_sent": 0}
        try:
            stats = await room.get_rtc_stats()
            for s in stats.publisher_stats:
                if s.HasField("outbound_rtp") and s.outbound_rtp.stream.kind == "video":
                    out["frames_encoded"] += s.outbound_rtp.outbound.frames_encoded
                    out["frames_sent"] += s.outbound_rtp.outbound.frames_sent
                    out["bytes_sent"] += s.outbound_rtp.sent.bytes_sent
        except Exception as e:  # stats are best effort
            out["error"] = str(e)
        say(t=time.time(), captured=counter["captured"], **out)
    for task in tasks:
        task.cancel()
    await room.disconnect()


if __name__ == "__main__":
    url, token = sys.argv[1], sys.argv[2]
    width, height, fps = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    stamped = len(sys.argv) > 6 and sys.argv[6] == "stamp"
    asyncio.run(main(url, token, width, height, fps, stamped))
