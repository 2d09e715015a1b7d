"""A real LiveKit client for the integration tests (LiveKit's Python SDK).

Usage: lk_client.py URL TOKEN MODE [SECONDS]
  publish  connect, try to publish a microphone track, print the outcome
  publish-stay  publish a microphone track like "publish", then stay like "stay"
  stay     connect, print "connected", then wait until disconnected (or SECONDS)
Every outcome is one JSON object per line on stdout.
"""

import asyncio
import json
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

    try:
        await room.connect(url, token)
    except Exception as e:  # the server refused the token
        say(connected=False, error=str(e))
        return
    say(connected=True, identity=room.local_participant.identity)

    if mode in ("publish", "publish-stay"):
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

    try:
        await asyncio.wait_for(gone.wait(), timeout=seconds)
        say(disconnected=True, reason=reason["value"])
    except asyncio.TimeoutError:
        say(disconnected=False)
        await room.disconnect()


if __name__ == "__main__":
    url, token, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 20.0
    asyncio.run(main(url, token, mode, seconds))
