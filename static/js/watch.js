// The watch page: plays the live stream for a viewer the server let in, and
// ticks the countdown of a scheduled one. The server decides everything else:
// htmx swaps the whole #stage (outerHTML) when the stream's status changes, so
// a player may appear (scheduled → live) or go away (live → ended) at any time.
// Each #player gets its own LiveKit room, disconnected when it leaves the page.
// The host's video going away while the stream stays live (OBS dropped, the
// broadcast page reloading) is shown as an interruption, and playing resumes
// when a video track comes back: LiveKit's track events say so, no reload.

import { DisconnectReason, Room, RoomEvent, Track } from "/static/vendor/livekit-client.esm.mjs";

const players = new Map(); // #player element → its Viewer

const WAITING = "Waiting for the host's video…";
const INTERRUPTED = "The broadcast was interrupted, waiting for the host…";

class Viewer {
  constructor(player) {
    this.player = player;
    this.tokenUrl = player.closest("#stage").dataset.tokenUrl;
    this.video = player.querySelector("#stream-video");
    this.state = player.querySelector("#player-state");
    this.unmute = player.querySelector("#unmute");
    this.retry = player.querySelector("#retry");
    this.fullscreen = player.querySelector("#fullscreen");
    this.audio = document.createElement("div"); // the host's audio elements
    this.audio.hidden = true;
    player.append(this.audio);
    this.room = null;
    this.shown = null; // the remote video track playing in #stream-video
    this.hadVideo = false; // a video played since connecting: its loss is an interruption
    this.closed = false;

    this.video.muted = true; // sound comes from the audio elements: video autoplay is always allowed
    this.video.addEventListener("playing", () => this.shown && this.setState("playing", "Live"));
    this.unmute.addEventListener("click", () => this.startAudio());
    this.retry.addEventListener("click", () => this.connect());
    this.fullscreen.addEventListener("click", () => this.toggleFullscreen());
    this.player.addEventListener("fullscreenchange", () => {
      this.fullscreen.textContent = document.fullscreenElement ? "Exit fullscreen" : "Fullscreen";
    });
  }

  setState(state, text) {
    this.state.dataset.state = state;
    this.state.textContent = text;
    this.player.dataset.state = state;
    this.retry.hidden = state !== "failed";
  }

  async connect() {
    await this.room?.disconnect();
    this.shown?.detach(this.video);
    this.shown = null;
    this.hadVideo = false;
    this.audio.replaceChildren();
    this.setState("connecting", "Connecting…");
    let grant;
    try {
      grant = await fetchToken(this.tokenUrl);
    } catch (error) {
      this.setState("failed", error.message);
      return;
    }
    if (this.closed) return;

    const room = new Room({ adaptiveStream: true });
    this.room = room;
    room
      .on(RoomEvent.TrackSubscribed, (track) => this.onTrack(room, track))
      .on(RoomEvent.TrackUnsubscribed, (track) => this.offTrack(room, track))
      .on(RoomEvent.AudioPlaybackStatusChanged, () => this.reflectAudio())
      .on(RoomEvent.Reconnecting, () => this.setState("reconnecting", "Reconnecting…"))
      .on(RoomEvent.Reconnected, () => (this.shown ? this.setState("playing", "Live") : this.showWaiting()))
      .on(RoomEvent.Disconnected, (reason) => this.onDisconnected(room, reason));
    try {
      await room.connect(grant.url, grant.token, { autoSubscribe: true });
    } catch (error) {
      if (this.room === room) this.setState("failed", `Could not connect to the stream: ${error.message}`);
      return;
    }
    if (this.closed) return room.disconnect();
    this.reflectAudio();
    if (!this.shown) this.showWaiting();
  }

  onTrack(room, track) {
    if (room !== this.room) return;
    if (track.kind === Track.Kind.Audio) {
      this.audio.append(track.attach());
      this.reflectAudio();
    } else {
      this.showBestVideo();
    }
  }

  offTrack(room, track) {
    track.detach().forEach((el) => el !== this.video && el.remove());
    if (room !== this.room || track !== this.shown) return;
    this.shown = null;
    // livekit-client fires this while the track is still on its publication.
    this.showBestVideo(track);
    if (!this.shown) this.showWaiting();
  }

  // No video to show: the host has not started yet, or was interrupted.
  showWaiting() {
    if (this.hadVideo) this.setState("interrupted", INTERRUPTED);
    else this.setState("connecting", WAITING);
  }

  // A shared screen is what the host wants seen; otherwise their camera.
  showBestVideo(leaving = null) {
    const videos = [...this.room.remoteParticipants.values()]
      .flatMap((p) => [...p.videoTrackPublications.values()])
      .filter((pub) => pub.isSubscribed && pub.videoTrack && pub.videoTrack !== leaving);
    const best = videos.find((pub) => pub.source === Track.Source.ScreenShare) ?? videos[0];
    if (!best || best.videoTrack === this.shown) return;
    this.shown?.detach(this.video);
    this.shown = best.videoTrack;
    this.hadVideo = true;
    this.shown.attach(this.video);
    this.video.muted = true; // attach() decides muting from the stream; keep ours silent
  }

  // Browsers may refuse to play sound before the viewer interacts with the page.
  reflectAudio() {
    this.unmute.hidden = !this.room || this.room.canPlaybackAudio;
  }

  async startAudio() {
    try {
      await this.room?.startAudio();
    } finally {
      this.reflectAudio();
    }
  }

  toggleFullscreen() {
    if (document.fullscreenElement) return document.exitFullscreen();
    if (this.player.requestFullscreen) return this.player.requestFullscreen();
    this.video.webkitEnterFullscreen?.(); // iOS Safari: only the video element can go fullscreen
  }

  onDisconnected(room, reason) {
    if (room !== this.room || this.closed) return;
    this.unmute.hidden = true;
    switch (reason) {
      case DisconnectReason.CLIENT_INITIATED:
        return; // our own doing (retry)
      case DisconnectReason.ROOM_DELETED:
      case DisconnectReason.ROOM_CLOSED:
        this.setState("ended", "The stream has ended.");
        break;
      case DisconnectReason.PARTICIPANT_REMOVED:
        this.setState("failed", "You were removed from this stream. If your pass has ended, get a new one, then retry.");
        break;
      case DisconnectReason.DUPLICATE_IDENTITY:
        this.setState("failed", "Your pass is now playing in another tab or on another device. Retry to watch here.");
        break;
      default:
        this.setState("failed", "The connection to the stream was lost.");
    }
    this.askForStage();
  }

  // The htmx element on the stage re-fetches it on this event; the server
  // answers "ended" once it has marked the stream so. The room is deleted a
  // moment before that, so ask again a little later while this player lasts.
  askForStage() {
    const ask = () => {
      if (this.player.isConnected) document.body.dispatchEvent(new CustomEvent("stream-disconnected"));
    };
    ask();
    setTimeout(ask, 2000);
    setTimeout(ask, 5000);
  }

  close() {
    this.closed = true;
    this.room?.disconnect();
    this.room = null;
  }
}

async function fetchToken(url) {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
      credentials: "same-origin",
    });
  } catch {
    throw new Error("The server could not be reached. Check your connection, then retry.");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error ?? `The server answered ${response.status}. Retry in a moment.`);
  return body;
}

// Starts a viewer for a player that appeared, stops those that went away.
function syncPlayers() {
  for (const [player, viewer] of players) {
    if (!player.isConnected) {
      viewer.close();
      players.delete(player);
    }
  }
  const player = document.getElementById("player");
  if (player && !players.has(player)) {
    const viewer = new Viewer(player);
    players.set(player, viewer);
    viewer.connect();
  }
}

// "2h 03m 10s" until a scheduled start.
function tickCountdown() {
  const el = document.getElementById("countdown");
  const at = Date.parse(el?.getAttribute("datetime"));
  if (Number.isNaN(at)) return;
  const s = Math.floor((at - Date.now()) / 1000);
  if (s <= 0) {
    el.textContent = "a moment";
    return;
  }
  const pad = (n) => String(n).padStart(2, "0");
  const [d, h, m, sec] = [Math.floor(s / 86400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60, s % 60];
  el.textContent = d > 0 ? `${d}d ${pad(h)}h ${pad(m)}m`
    : h > 0 ? `${h}h ${pad(m)}m ${pad(sec)}s`
    : `${m}m ${pad(sec)}s`;
}

// "Your pass ends in 1h 02m": ticks the viewer's time left, and from five
// minutes before the end shows the warning and the extension link (it opens
// the pass page in a new tab, so the player here keeps playing).
const WARN_BEFORE_MS = 5 * 60 * 1000;
function tickTimeLeft() {
  const el = document.getElementById("time-left");
  const at = Date.parse(el?.dataset.expiresAt);
  if (Number.isNaN(at)) return;
  const left = at - Date.now();
  const value = el.querySelector(".time-left-value");
  const s = Math.max(0, Math.floor(left / 1000));
  const pad = (n) => String(n).padStart(2, "0");
  const [d, h, m, sec] = [Math.floor(s / 86400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60, s % 60];
  if (value) {
    value.textContent = d > 0 ? `in ${d}d ${pad(h)}h` : h > 0 ? `in ${h}h ${pad(m)}m` : `in ${m}m ${pad(sec)}s`;
  }
  const warn = left <= WARN_BEFORE_MS;
  el.classList.toggle("time-left-warning", warn);
  const link = document.getElementById("extend-pass");
  if (link) link.hidden = !warn;
}

syncPlayers();
tickTimeLeft();
setInterval(tickTimeLeft, 1000);
document.addEventListener("htmx:load", syncPlayers);
document.addEventListener("htmx:afterSwap", syncPlayers);
window.addEventListener("pagehide", () => players.forEach((viewer) => viewer.close()));
tickCountdown();
setInterval(tickCountdown, 1000);
