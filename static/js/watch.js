// The watch page: plays the live stream for a viewer the server let in, and
// ticks the viewer's time left (app.js ticks "in 2 h" and "live for 5 min",
// with the home page's words). The server decides everything else:
// htmx swaps the whole #stage (outerHTML) when the stream's status changes, so
// a player may appear (scheduled → live) or go away (live → ended) at any time.
// Each #player gets its own LiveKit room, disconnected when it leaves the page.
//
// The player's controls are plain buttons the page renders; this script wires
// them: play/pause (pausing asks the server to stop sending the tracks), mute
// and volume (remembered in this browser), the quality menu (Auto, or a cap at
// one of the simulcast layers the host publishes), the connection indicator,
// the stats panel, theatre mode and fullscreen, and their keyboard shortcuts
// (k or space, m, f, t, arrows up and down).
//
// What viewers see follows the host's tracks, as LiveKit reports them: a
// shared screen with the camera as picture-in-picture, the camera alone, a
// card when the camera is off (the sound goes on), a "Be right back" card
// while the host has paused (their `brb` attribute holds since when), and
// "The host is reconnecting…" when their video went away mid-stream.

import {
  ConnectionQuality,
  DisconnectReason,
  Room,
  RoomEvent,
  Track,
  VideoQuality,
} from "/static/vendor/livekit-client.esm.mjs";

const players = new Map(); // #player element → its Viewer

const WAITING = "Waiting for the host's video…";
const RECONNECTING = "The host is reconnecting…";

// What this browser remembers between visits (private modes may refuse).
const store = {
  get(key) {
    try {
      return localStorage.getItem(`stagepass.player.${key}`);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      localStorage.setItem(`stagepass.player.${key}`, String(value));
    } catch {
      // Not remembered; the control still works on this page.
    }
  },
};

const QUALITY_NAMES = { [VideoQuality.LOW]: "Low", [VideoQuality.MEDIUM]: "Medium", [VideoQuality.HIGH]: "High" };
const CONNECTION_NAMES = {
  [ConnectionQuality.Excellent]: "Excellent",
  [ConnectionQuality.Good]: "Good",
  [ConnectionQuality.Poor]: "Poor",
  [ConnectionQuality.Lost]: "Lost",
};

class Viewer {
  constructor(player) {
    this.player = player;
    this.tokenUrl = player.closest("#stage").dataset.tokenUrl;
    const $ = (id) => player.querySelector(`#${id}`);
    this.video = $("stream-video");
    this.pip = $("pip-video");
    this.state = $("player-state");
    this.card = $("player-card");
    this.ui = {
      unmute: $("unmute"),
      retry: $("retry"),
      play: $("play-pause"),
      mute: $("mute"),
      volume: $("volume"),
      quality: $("quality"),
      connection: $("connection-quality"),
      statsToggle: $("stats-toggle"),
      stats: $("player-stats"),
      theatre: $("theatre"),
      fullscreen: $("fullscreen"),
    };
    this.audio = document.createElement("div"); // the host's audio elements
    this.audio.hidden = true;
    player.append(this.audio);
    this.room = null;
    this.shown = null; // the remote video track playing in #stream-video
    this.pipShown = null; // the camera over a shared screen
    this.hadVideo = false; // a video played since connecting: its loss is an interruption
    this.closed = false;
    this.paused = false;
    this.quality = "auto";
    this.volume = clampVolume(Number(store.get("volume") ?? 1));
    this.muted = store.get("muted") === "true";
    this.statsTimer = null;
    this.lastInbound = null;
    this.cardTimer = null;

    this.video.muted = true; // sound comes from the audio elements: video autoplay is always allowed
    this.video.addEventListener("playing", () => this.shown && !this.paused && this.setState("playing", "Live"));
    this.ui.unmute.addEventListener("click", () => this.startAudio());
    this.ui.retry.addEventListener("click", () => this.connect());
    this.ui.play.addEventListener("click", () => this.togglePlay());
    this.ui.mute.addEventListener("click", () => this.setMuted(!this.muted));
    this.ui.volume.addEventListener("input", () => {
      const volume = clampVolume(Number(this.ui.volume.value) / 100);
      this.setVolume(volume);
      if (volume > 0 && this.muted) this.setMuted(false);
    });
    this.ui.quality.addEventListener("change", () => {
      this.quality = this.ui.quality.value;
      this.applyQuality();
    });
    this.ui.statsToggle.addEventListener("click", () => this.toggleStats());
    this.ui.theatre.addEventListener("click", () => toggleTheatre());
    this.ui.fullscreen.addEventListener("click", () => this.toggleFullscreen());
    this.player.addEventListener("fullscreenchange", () => {
      const on = document.fullscreenElement === this.player;
      this.ui.fullscreen.textContent = on ? "Exit fullscreen" : "Fullscreen";
    });
    this.reflectAudio();
    reflectTheatre();
  }

  setState(state, text) {
    this.state.dataset.state = state;
    this.state.textContent = text;
    this.player.dataset.state = state;
    this.ui.retry.hidden = state !== "failed";
  }

  async connect() {
    await this.room?.disconnect();
    this.shown?.detach(this.video);
    this.pipShown?.detach(this.pip);
    this.shown = null;
    this.pipShown = null;
    this.hadVideo = false;
    this.audio.replaceChildren();
    this.showCard(null);
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
    const refresh = () => room === this.room && this.refresh();
    room
      .on(RoomEvent.TrackSubscribed, (track) => this.onTrack(room, track))
      .on(RoomEvent.TrackUnsubscribed, (track) => this.offTrack(room, track))
      .on(RoomEvent.TrackMuted, refresh)
      .on(RoomEvent.TrackUnmuted, refresh)
      .on(RoomEvent.TrackPublished, refresh)
      .on(RoomEvent.ParticipantAttributesChanged, refresh)
      .on(RoomEvent.ParticipantDisconnected, refresh)
      .on(RoomEvent.AudioPlaybackStatusChanged, () => this.reflectAudio())
      .on(RoomEvent.ConnectionQualityChanged, (quality, participant) => {
        if (participant === room.localParticipant) this.reflectConnection(quality);
      })
      .on(RoomEvent.Reconnecting, () => this.setState("reconnecting", "Reconnecting…"))
      .on(RoomEvent.Reconnected, refresh)
      .on(RoomEvent.Disconnected, (reason) => this.onDisconnected(room, reason));
    try {
      await room.connect(grant.url, grant.token, { autoSubscribe: true });
    } catch (error) {
      if (this.room === room) this.setState("failed", `Could not connect to the stream: ${error.message}`);
      return;
    }
    if (this.closed) return room.disconnect();
    this.reflectAudio();
    this.refresh();
    // The count above the fold includes this viewer once LiveKit has told
    // the server (its webhook): refresh it then rather than in 15 s.
    setTimeout(() => document.body.dispatchEvent(new CustomEvent("live-stats-poll")), 3000);
  }

  onTrack(room, track) {
    if (room !== this.room) return;
    if (track.kind === Track.Kind.Audio) {
      const el = track.attach();
      this.audio.append(el);
      this.applyAudio();
      if (this.paused) el.pause();
      this.reflectAudio();
    }
    this.refresh();
  }

  offTrack(room, track) {
    track.detach().forEach((el) => el !== this.video && el !== this.pip && el.remove());
    if (room !== this.room) return;
    if (track === this.shown) this.shown = null;
    if (track === this.pipShown) this.pipShown = null;
    // livekit-client fires this while the track is still on its publication.
    this.refresh(track);
  }

  // The host's publications, as this viewer receives them.
  publications(leaving = null) {
    return [...this.room.remoteParticipants.values()].flatMap((p) =>
      [...p.trackPublications.values()]
        .filter((pub) => !leaving || pub.track !== leaving)
        .map((pub) => ({ pub, participant: p })),
    );
  }

  // Decides what the screen shows from the tracks LiveKit reports.
  refresh(leaving = null) {
    if (!this.room || this.closed) return;
    const all = this.publications(leaving);
    const live = (source) =>
      all.find(({ pub }) => pub.source === source && pub.isSubscribed && pub.videoTrack && !pub.isMuted)?.pub;
    const screen = live(Track.Source.ScreenShare);
    const camera = live(Track.Source.Camera) ?? all.find(({ pub }) =>
      pub.kind === Track.Kind.Video && pub.source !== Track.Source.ScreenShare && pub.isSubscribed && pub.videoTrack && !pub.isMuted)?.pub;
    const brb = all.map(({ participant }) => participant.attributes?.brb).find(Boolean);
    const hearing = all.some(({ pub }) => pub.kind === Track.Kind.Audio && pub.isSubscribed && !pub.isMuted);
    // A muted camera, or sound with no video at all (as the broadcast preview says).
    const cameraOff = all.some(({ pub }) => pub.source === Track.Source.Camera && pub.isMuted)
      || (hearing && !all.some(({ pub }) => pub.kind === Track.Kind.Video));

    const main = brb ? null : screen ?? camera;
    this.attachMain(main?.videoTrack ?? null);
    this.attachPip(!brb && screen && camera ? camera.videoTrack : null);
    this.offerQualities(main);

    if (brb) {
      this.showCard("brb", "Be right back", brb);
    } else if (!main && cameraOff) {
      this.showCard("camera-off", "The host turned their camera off", null, hearing ? "The sound goes on." : "");
    } else {
      this.showCard(null);
    }
    if (this.paused) return this.setState("paused", "Paused");
    // A card is on screen: the stream is live, only the picture is away.
    if (!main && (brb || cameraOff)) return this.setState("playing", "Live");
    // The video element's "playing" event says Live once frames arrive.
    if (main && !this.video.paused && this.video.currentTime > 0) return this.setState("playing", "Live");
    if (main && this.state.dataset.state === "playing") return;
    this.setState(this.hadVideo && !main ? "interrupted" : "connecting", this.hadVideo && !main ? RECONNECTING : WAITING);
  }

  attachMain(track) {
    if (track === this.shown) return;
    this.shown?.detach(this.video);
    this.shown = track;
    if (!track) return;
    this.hadVideo = true;
    track.attach(this.video);
    this.video.muted = true; // attach() decides muting from the stream; keep ours silent
    if (this.paused) this.video.pause();
  }

  attachPip(track) {
    if (track === this.pipShown) return;
    this.pipShown?.detach(this.pip);
    this.pipShown = track;
    this.pip.hidden = !track;
    if (!track) return;
    track.attach(this.pip);
    this.pip.muted = true;
  }

  // A card over the video: the camera is off, or the host will be right back
  // (with how long it has lasted, from the `brb` attribute's time).
  showCard(kind, title = "", since = null, detail = "") {
    clearInterval(this.cardTimer);
    this.card.hidden = !kind;
    this.card.dataset.kind = kind ?? "";
    if (!kind) return;
    const heading = this.card.querySelector(".player-card-title");
    if (heading.textContent !== title) heading.textContent = title; // announced once
    const line = this.card.querySelector(".player-card-detail");
    const at = Date.parse(since);
    if (Number.isNaN(at)) {
      line.textContent = detail;
      return;
    }
    const tick = () => (line.textContent = `Paused for ${duration(Math.max(0, Date.now() - at) / 1000)}`);
    tick();
    this.cardTimer = setInterval(tick, 1000);
  }

  // The quality menu lists the layers the host publishes (simulcast), highest first.
  offerQualities(pub) {
    const layers = (pub?.trackInfo?.layers ?? [])
      .filter((l) => l.width > 0 && l.height > 0)
      .sort((a, b) => b.quality - a.quality);
    const key = layers.map((l) => `${l.quality}:${l.height}`).join(",");
    if (key === this.layersKey) return;
    this.layersKey = key;
    const select = this.ui.quality;
    const options = [new Option("Auto", "auto")].concat(
      layers.map((l) => new Option(`${QUALITY_NAMES[l.quality] ?? "Layer"} · ${l.height}p`, String(l.quality))),
    );
    select.replaceChildren(...options);
    // The viewer's choice outlives a moment without video (Be right back).
    select.value = options.some((o) => o.value === this.quality) ? this.quality : "auto";
    select.closest(".player-quality").hidden = layers.length < 2;
    this.applyQuality();
  }

  // Auto lets LiveKit follow the player's size and the network; a layer caps it.
  applyQuality() {
    const pub = this.publications().find(({ pub }) => pub.videoTrack && pub.videoTrack === this.shown)?.pub;
    if (!pub) return;
    const listed = [...this.ui.quality.options].some((o) => o.value === this.quality);
    pub.setVideoQuality(this.quality === "auto" || !listed ? VideoQuality.HIGH : Number(this.quality));
  }

  togglePlay() {
    this.paused = !this.paused;
    this.ui.play.textContent = this.paused ? "Play" : "Pause";
    this.ui.play.setAttribute("aria-label", this.paused ? "Play" : "Pause");
    // The elements stop playing; LiveKit keeps sending, so that resuming is
    // instant and adaptive stream keeps following the player's size.
    const media = [this.video, this.pip, ...this.audio.querySelectorAll("audio")];
    for (const el of media) {
      if (this.paused) el.pause();
      else el.play().catch(() => this.reflectAudio());
    }
    this.refresh();
  }

  setMuted(muted) {
    this.muted = muted;
    store.set("muted", muted);
    this.applyAudio();
  }

  setVolume(volume) {
    this.volume = clampVolume(volume);
    store.set("volume", this.volume);
    this.applyAudio();
  }

  applyAudio() {
    for (const el of this.audio.querySelectorAll("audio")) {
      el.volume = this.volume;
      el.muted = this.muted;
    }
    this.ui.mute.textContent = this.muted ? "Unmute" : "Mute";
    this.ui.volume.value = String(Math.round(this.volume * 100));
    this.ui.volume.setAttribute("aria-valuetext", `${Math.round(this.volume * 100)} %${this.muted ? ", muted" : ""}`);
  }

  reflectConnection(quality) {
    const name = CONNECTION_NAMES[quality] ?? "Unknown";
    this.ui.connection.dataset.quality = quality;
    this.ui.connection.querySelector(".connection-name").textContent = name;
    this.ui.connection.setAttribute("aria-label", `Connection: ${name.toLowerCase()}`);
    this.ui.connection.title = `Connection: ${name.toLowerCase()}`;
  }

  // Browsers may refuse to play sound before the viewer interacts with the page.
  reflectAudio() {
    this.ui.unmute.hidden = !this.room || this.room.canPlaybackAudio;
    this.applyAudio();
  }

  async startAudio() {
    try {
      await this.room?.startAudio();
      if (this.muted) this.setMuted(false);
    } finally {
      this.reflectAudio();
    }
  }

  toggleFullscreen() {
    if (document.fullscreenElement) return document.exitFullscreen();
    if (this.player.requestFullscreen) return this.player.requestFullscreen();
    this.video.webkitEnterFullscreen?.(); // iOS Safari: only the video element can go fullscreen
  }

  toggleStats() {
    const open = this.ui.stats.hidden;
    this.ui.stats.hidden = !open;
    this.ui.statsToggle.setAttribute("aria-expanded", String(open));
    clearInterval(this.statsTimer);
    this.lastInbound = null;
    if (open) {
      this.updateStats();
      this.statsTimer = setInterval(() => this.updateStats(), 1000);
    }
  }

  // Resolution, frame rate, bitrate and loss of the video as received, and an
  // estimate of the latency: half the round trip plus the jitter buffer.
  async updateStats() {
    const receiver = this.shown?.receiver;
    const set = (name, text) => (this.ui.stats.querySelector(`[data-stat="${name}"]`).textContent = text);
    if (!receiver) {
      for (const name of ["resolution", "fps", "bitrate", "loss", "latency"]) set(name, "–");
      return;
    }
    const report = await receiver.getStats();
    let inbound = null;
    let pair = null;
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") inbound = s;
      if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
    });
    if (!inbound) return;
    set("resolution", inbound.frameWidth ? `${inbound.frameWidth}×${inbound.frameHeight}` : "–");
    set("fps", inbound.framesPerSecond != null ? `${Math.round(inbound.framesPerSecond)}` : "–");
    const last = this.lastInbound;
    if (last && inbound.timestamp > last.timestamp) {
      const kbps = ((inbound.bytesReceived - last.bytesReceived) * 8) / (inbound.timestamp - last.timestamp);
      set("bitrate", `${Math.round(kbps)} kbit/s`);
    }
    this.lastInbound = inbound;
    const received = inbound.packetsReceived ?? 0;
    const lost = Math.max(0, inbound.packetsLost ?? 0);
    set("loss", received + lost > 0 ? `${((100 * lost) / (received + lost)).toFixed(1)} %` : "–");
    const buffer = inbound.jitterBufferEmittedCount ? (1000 * inbound.jitterBufferDelay) / inbound.jitterBufferEmittedCount : null;
    const rtt = pair?.currentRoundTripTime != null ? pair.currentRoundTripTime * 1000 : null;
    set("latency", buffer != null ? `≈ ${Math.round(buffer + (rtt ?? 0) / 2)} ms` : "–");
  }

  onDisconnected(room, reason) {
    if (room !== this.room || this.closed) return;
    this.ui.unmute.hidden = true;
    this.showCard(null);
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
    clearInterval(this.statsTimer);
    clearInterval(this.cardTimer);
    this.room?.disconnect();
    this.room = null;
  }
}

function clampVolume(v) {
  return Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 1;
}

// Theatre mode widens the player over the chat column; remembered like the volume.
function toggleTheatre() {
  store.set("theatre", store.get("theatre") !== "true");
  reflectTheatre();
}

function reflectTheatre() {
  const on = store.get("theatre") === "true";
  document.querySelector(".watch")?.classList.toggle("theatre", on);
  document.getElementById("theatre")?.setAttribute("aria-pressed", String(on));
}

// The shortcuts act while the player has the focus (clicking it gives it),
// or nothing on the page has: never while typing, on a link or in the chat.
// The arrows change the volume only in the player; elsewhere they scroll.
document.addEventListener("keydown", (event) => {
  const viewer = [...players.values()][0];
  if (!viewer || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  const target = event.target;
  const inPlayer = viewer.player.contains(target);
  if (!inPlayer && target !== document.body) return;
  if (target.closest?.("input, textarea, select, [contenteditable]")) return;
  const onButton = target.closest?.("button, a, summary");
  switch (event.key) {
    case "k":
    case "K":
      viewer.togglePlay();
      break;
    case " ":
      if (onButton) return; // space presses the focused button
      viewer.togglePlay();
      break;
    case "m":
    case "M":
      viewer.setMuted(!viewer.muted);
      break;
    case "f":
    case "F":
      viewer.toggleFullscreen();
      break;
    case "t":
    case "T":
      toggleTheatre();
      break;
    case "ArrowUp":
    case "ArrowDown":
      if (!inPlayer) return;
      viewer.setVolume(viewer.volume + (event.key === "ArrowUp" ? 0.1 : -0.1));
      if (viewer.muted && event.key === "ArrowUp") viewer.setMuted(false);
      break;
    default:
      return;
  }
  event.preventDefault();
});

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

// "2h 03m 10s", "4m 05s", "3d 02h 10m".
function duration(seconds) {
  const s = Math.floor(seconds);
  const pad = (n) => String(n).padStart(2, "0");
  const [d, h, m, sec] = [Math.floor(s / 86400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60, s % 60];
  return d > 0 ? `${d}d ${pad(h)}h ${pad(m)}m` : h > 0 ? `${h}h ${pad(m)}m ${pad(sec)}s` : `${m}m ${pad(sec)}s`;
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

function tick() {
  tickTimeLeft();
}

syncPlayers();
reflectTheatre();
tick();
setInterval(tick, 1000);
document.addEventListener("htmx:load", syncPlayers);
document.addEventListener("htmx:afterSwap", () => {
  syncPlayers();
  tick();
});
window.addEventListener("pagehide", () => players.forEach((viewer) => viewer.close()));
