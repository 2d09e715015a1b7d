"""A real LiveKit client for the integration tests (LiveKit's Python SDK).

Usage: lk_client.py URL TOKEN MODE [SECONDS]
  publish  connect, try to publish a microphone track, print the outcome
  publish-stay  publish a microphone track like "publish", then stay like "stay"
  tone     publish a microphone track that sounds (a 440 Hz tone, so that a
           recorder has something to write), then stay like "stay"
  stay     connect, print "connected", then wait until disconnected (or SECONDS)
  watch    connect, subscribe, and count the video frames received: print
           {"frames": N, "width": W, "height": H, "from": IDENTITY} after 30
           frames (or SECONDS)
Every outcome is one JSON object per line on stdout.
"""

import asyncio
import json
import math
import sys

from livekit import rtc


def say(**fields):
    print(json.dumps(fields), flush=True)


async def main(url: str, token: str, mode: str, seconds: float) -> None:
    room = rtc.Room()
    gone = asyncio.Event()
    reason = {"value": None}

    @room.on("disconnected")
    def _on_disconnected(why):
        reason["value"] = rtc.DisconnectReason.Name(why) if isinstance(why, int) else str(why)
        gone.set()

    video = {"frames": 0, "width": 0, "height": 0, "from": None}
    enough = asyncio.Event()
    readers = []

    async def count_frames(track, identity):
        async for event in rtc.VideoStream(track):
            video["frames"] += 1
            video["width"], video["height"] = event.frame.width, event.frame.height
            video["from"] = identity
            if video["frames"] >= 30:
                enough.set()

    @room.on("track_subscribed")
    def _on_track_subscribed(track, publication, participant):
        if mode == "watch" and track.kind == rtc.TrackKind.KIND_VIDEO:
            readers.append(asyncio.ensure_future(count_frames(track, participant.identity)))

    try:
        await room.connect(url, token)
    except Exception as e:  # the server refused the token
        say(connected=False, error=str(e))
        return
    say(connected=True, identity=room.local_participant.identity)

    if mode == "watch":
        try:
            await asyncio.wait_for(enough.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass
        say(**video)
        for reader in readers:
            reader.cancel()
        await room.disconnect()
        return

    if mode in ("publish", "publish-stay", "tone"):
        source = rtc.AudioSource(48000, 1)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        try:
            await asyncio.wait_for(room.local_participant.publish_track(track, options), timeout=seconds)
            say(published=True)
        except Exception as e:
            say(published=False, error=str(e) or type(e).__name__)
        if mode == "publish":
            await room.disconnect()
            return
        if mode == "tone":
            readers.append(asyncio.ensure_future(sound(source)))

    try:
        await asyncio.wait_for(gone.wait(), timeout=seconds)
        say(disconnected=True, reason=reason["value"])
    except asyncio.TimeoutError:
        say(disconnected=False)
        await room.disconnect()


async def sound(source) -> None:
    """Feeds the source 20 ms frames of a quiet 440 Hz tone, in real time."""
    rate, n = 48000, 960
    t = 0
    while True:
        frame = rtc.AudioFrame.create(rate, 1, n)
        samples = frame.data
        for i in range(n):
            samples[i] = int(3000 * math.sin(2 * math.pi * 440 * (t + i) / rate))
        t += n
        await source.capture_frame(frame)


if __name__ == "__main__":
    url, token, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 20.0
    asyncio.run(main(url, token, mode, seconds))
