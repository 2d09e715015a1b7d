// The broadcast page: camera and microphone preview with device pickers, and —
// once the stream is live — publishing them (and a shared screen) to the
// stream's LiveKit room. Everything else on the page is server-rendered.
//
// One set of local tracks serves both the preview and the broadcast: the
// tracks made for the preview are the ones published, so going live never
// asks for the camera twice, and muting or switching a device works the same
// before and after connecting (livekit-client forwards both to the room).
//
// The preview shows what viewers see (a shared screen with the camera in the
// corner, or the card they get while the camera is off or the host is right
// back). "Be right back" mutes camera and microphone and sets the host's
// `brb` attribute, which the watch page shows with its duration. A second
// tab taking the broadcast over is told apart from a failure: this tab says
// where the broadcast is and offers to take it back.

import {
  ConnectionState,
  DisconnectReason,
  MediaDeviceFailure,
  Room,
  RoomEvent,
  Track,
  VideoPresets,
  createLocalAudioTrack,
  createLocalTracks,
  createLocalVideoTrack,
} from "/static/vendor/livekit-client.esm.mjs";

const section = document.getElementById("broadcast");
const $ = (id) => document.getElementById(id);

const ui = {
  preview: $("preview"),
  previewPip: $("preview-pip"),
  previewCard: $("preview-card"),
  state: $("connection-state"),
  reconnect: $("reconnect"),
  mediaError: $("media-error"),
  elapsed: $("elapsed"),
  toggleMicrophone: $("toggle-microphone"),
  toggleCamera: $("toggle-camera"),
  toggleScreen: $("toggle-screen"),
  togglePause: $("toggle-pause"),
  cameraSelect: $("camera-select"),
  microphoneSelect: $("microphone-select"),
};

const VIDEO = { resolution: VideoPresets.h720.resolution };

// The local camera and microphone tracks (null until they start).
const tracks = { camera: null, microphone: null };
let previewReady = Promise.resolve();
let previewStarted = false;
let room = null;
// While paused ("Be right back"): which of camera and microphone were on before.
let pausedFrom = null;

if (section) {
  start();
}

async function start() {
  const status = section.dataset.status;
  if (status === "ended") {
    setConnection("idle", "This stream has ended.");
    for (const el of controls()) el.disabled = true;
    return;
  }
  bindControls();
  tickElapsed();
  setInterval(tickElapsed, 1000);
  // Connecting need not wait for the browser's camera prompt; publishing does.
  previewReady = startPreview();
  if (status === "live") await connect();
}

// --- Local media ----------------------------------------------------------

async function startPreview() {
  try {
    const list = await createLocalTracks({ audio: true, video: VIDEO });
    for (const track of list) adopt(track);
    hideMediaError();
  } catch (error) {
    // One broken device should not take the other with it: try each alone.
    const [video, audio] = await Promise.allSettled([
      createLocalVideoTrack(VIDEO),
      createLocalAudioTrack(),
    ]);
    if (video.status === "fulfilled") adopt(video.value);
    if (audio.status === "fulfilled") adopt(audio.value);
    showMediaError(error);
  }
  await fillDevicePickers();
  previewStarted = true;
  reflect();
}

function adopt(track) {
  if (track.kind === Track.Kind.Video) {
    tracks.camera = track;
    track.attach(ui.preview);
  } else {
    tracks.microphone = track;
  }
}

function showMediaError(error) {
  const advice = {
    [MediaDeviceFailure.PermissionDenied]:
      "Your browser blocked the camera or microphone. Allow both for this site (the camera icon in the address bar), then reload the page.",
    [MediaDeviceFailure.NotFound]:
      "No camera or microphone was found. Connect one, then reload the page.",
    [MediaDeviceFailure.DeviceInUse]:
      "Your camera or microphone is in use by another application. Close it, then reload the page.",
  }[MediaDeviceFailure.getFailure(error)];
  ui.mediaError.textContent =
    advice ?? `The camera or microphone could not start (${error?.message ?? error}). Check your devices, then reload the page.`;
  ui.mediaError.hidden = false;
}

function hideMediaError() {
  ui.mediaError.hidden = true;
  ui.mediaError.textContent = "";
}

// Device labels are only readable once the page may use the devices, so the
// pickers are filled after the preview started (and again when devices change).
async function fillDevicePickers() {
  const pickers = [
    ["videoinput", ui.cameraSelect, tracks.camera, "Camera"],
    ["audioinput", ui.microphoneSelect, tracks.microphone, "Microphone"],
  ];
  for (const [kind, select, track, noun] of pickers) {
    const devices = await Room.getLocalDevices(kind, false).catch(() => []);
    const current = track?.mediaStreamTrack.getSettings().deviceId;
    select.replaceChildren(
      ...devices.map((d, i) => new Option(d.label || `${noun} ${i + 1}`, d.deviceId, false, d.deviceId === current)),
    );
    select.disabled = devices.length === 0;
  }
}

async function switchDevice(kind, deviceId) {
  const key = kind === "videoinput" ? "camera" : "microphone";
  try {
    if (!tracks[key]) {
      // The device failed at start-up; the owner picked another one: start it.
      const track = key === "camera"
        ? await createLocalVideoTrack({ ...VIDEO, deviceId: { exact: deviceId } })
        : await createLocalAudioTrack({ deviceId: { exact: deviceId } });
      adopt(track);
      if (connected()) await room.localParticipant.publishTrack(track);
    } else if (connected()) {
      // Replaces the published track's source; viewers see no interruption.
      await room.switchActiveDevice(kind, deviceId, true);
    } else {
      await tracks[key].setDeviceId({ exact: deviceId });
    }
    hideMediaError();
  } catch (error) {
    showMediaError(error);
  }
  reflect();
}

// --- Controls ---------------------------------------------------------------

function controls() {
  return [ui.toggleMicrophone, ui.toggleCamera, ui.toggleScreen, ui.togglePause, ui.cameraSelect, ui.microphoneSelect];
}

function bindControls() {
  ui.toggleMicrophone.addEventListener("click", () => toggleMute(tracks.microphone));
  ui.toggleCamera.addEventListener("click", () => toggleMute(tracks.camera));
  ui.toggleScreen.addEventListener("click", toggleScreen);
  ui.togglePause.addEventListener("click", togglePause);
  ui.cameraSelect.addEventListener("change", () => switchDevice("videoinput", ui.cameraSelect.value));
  ui.microphoneSelect.addEventListener("change", () => switchDevice("audioinput", ui.microphoneSelect.value));
  ui.reconnect?.addEventListener("click", connect);
  navigator.mediaDevices?.addEventListener("devicechange", fillDevicePickers);
}

async function toggleMute(track) {
  if (!track) return;
  try {
    // A muted camera is stopped (its light goes off) and restarted on unmute.
    await (track.isMuted ? track.unmute() : track.mute());
  } catch (error) {
    showMediaError(error);
  }
  reflect();
}

async function toggleScreen() {
  if (!connected()) return;
  const sharing = room.localParticipant.isScreenShareEnabled;
  try {
    await room.localParticipant.setScreenShareEnabled(!sharing);
  } catch (error) {
    // Cancelling the browser's picker is not an error worth showing.
    if (error?.name !== "NotAllowedError") {
      ui.mediaError.textContent = `Screen sharing could not start (${error.message}).`;
      ui.mediaError.hidden = false;
    }
  }
  reflect();
}

// "Be right back": camera and microphone go off, and the `brb` attribute
// tells viewers since when (their player shows a card with the time). Resume
// turns back on what was on before, and clears the attribute.
// Each step is undone if a later one fails, so the page never says "paused"
// while viewers still see the camera (or the other way round).
async function togglePause() {
  if (!connected()) return;
  const devices = [tracks.camera, tracks.microphone];
  if (!pausedFrom) {
    const on = devices.map((t) => Boolean(t && !t.isMuted));
    const since = new Date().toISOString();
    try {
      await Promise.all(devices.filter((t) => t && !t.isMuted).map((t) => t.mute()));
      await room.localParticipant.setAttributes({ brb: since });
      pausedFrom = { on, since };
    } catch (error) {
      await Promise.allSettled(devices.filter((t, i) => t && on[i] && t.isMuted).map((t) => t.unmute()));
      showPauseError("Be right back could not start", error);
    }
  } else {
    try {
      await room.localParticipant.setAttributes({ brb: "" });
      const wasOn = pausedFrom.on;
      pausedFrom = null;
      await Promise.all(devices.filter((t, i) => t && wasOn[i] && t.isMuted).map((t) => t.unmute()));
    } catch (error) {
      showPauseError("Resuming did not fully work", error);
    }
  }
  reflect();
}

function showPauseError(what, error) {
  ui.mediaError.textContent = `${what} (${error?.message ?? error}). Check your connection, then try again.`;
  ui.mediaError.hidden = false;
}

// Buttons say what they will do; aria-pressed says what is on now.
function reflect() {
  const mic = tracks.microphone;
  const cam = tracks.camera;
  const sharing = connected() && room.localParticipant.isScreenShareEnabled;
  setToggle(ui.toggleMicrophone, mic, mic && !mic.isMuted, "Mute mic", "Unmute mic");
  setToggle(ui.toggleCamera, cam, cam && !cam.isMuted, "Turn camera off", "Turn camera on");
  setToggle(ui.toggleScreen, connected(), sharing, "Stop sharing", "Share screen");
  setToggle(ui.togglePause, connected(), Boolean(pausedFrom), "Resume", "Be right back");
  ui.togglePause.title = connected() ? "" : "Pausing is available once you are live.";
  ui.toggleScreen.title = connected() ? "" : "Screen sharing is available once you are live.";
  ui.preview.classList.toggle("is-off", !cam || cam.isMuted);
  showAsViewersSee(sharing);
}

// The preview shows what viewers see (watch.js decides theirs the same way):
// a shared screen with the camera in the corner, the camera alone, or the
// card viewers get while the camera is off or the host is right back.
function showAsViewersSee(sharing) {
  const cam = tracks.camera;
  const screen = sharing ? room.localParticipant.getTrackPublication(Track.Source.ScreenShare)?.track : null;
  const main = screen ?? cam;
  const attached = ui.preview.srcObject?.getVideoTracks?.()[0];
  if (main && attached !== main.mediaStreamTrack) main.attach(ui.preview);
  const pip = screen && cam && !cam.isMuted ? cam : null;
  ui.previewPip.hidden = !pip;
  if (pip && ui.previewPip.srcObject?.getVideoTracks?.()[0] !== pip.mediaStreamTrack) pip.attach(ui.previewPip);
  const card = pausedFrom
    ? ["Be right back", "Viewers see this card, with how long you have been away."]
    : !screen && (!cam || cam.isMuted)
      ? ["The host turned their camera off", "Viewers see this card; your microphone goes on if it is on."]
      : null;
  ui.previewCard.hidden = !card;
  if (card) {
    ui.previewCard.querySelector(".player-card-title").textContent = card[0];
    ui.previewCard.querySelector(".player-card-detail").textContent = card[1];
  }
}

function setToggle(button, enabled, on, onLabel, offLabel) {
  button.disabled = !enabled;
  button.setAttribute("aria-pressed", String(Boolean(on)));
  button.textContent = on ? onLabel : offLabel;
}

// --- The room ---------------------------------------------------------------

function connected() {
  return room?.state === ConnectionState.Connected;
}

function setConnection(state, text) {
  ui.state.dataset.state = state;
  ui.state.textContent = text;
  if (!ui.reconnect) return;
  ui.reconnect.hidden = state !== "failed" && state !== "elsewhere";
  ui.reconnect.textContent = state === "elsewhere" ? "Broadcast from this tab" : "Reconnect";
}

// One broadcast per stream: LiveKit keeps the newest connection of the host's
// identity. The tabs of this browser tell each other when one stops, so a
// tab that was taken over knows when nobody broadcasts any more.
const tabs = section && "BroadcastChannel" in window
  ? new BroadcastChannel(`stagepass-broadcast-${section.dataset.streamId}`)
  : null;
const ELSEWHERE = "Broadcasting from another tab or device now: viewers see that one, not this tab.";
tabs?.addEventListener("message", (event) => {
  if (ui.state.dataset.state !== "elsewhere") return;
  if (event.data === "stopped") {
    setConnection("elsewhere", "The other tab stopped broadcasting: nobody is live on camera now. Broadcast from this tab to go on.");
  } else if (event.data === "live") {
    setConnection("elsewhere", ELSEWHERE); // it reloaded, or another tab took over
  }
});
window.addEventListener("pagehide", () => {
  if (connected()) tabs?.postMessage("stopped");
});

async function fetchToken() {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
  let response;
  try {
    response = await fetch(section.dataset.tokenUrl, {
      method: "POST",
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
      credentials: "same-origin",
    });
  } catch {
    throw new Error("stagepass could not be reached. Check your connection.");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error ?? `the server answered ${response.status}.`);
  return body;
}

async function connect() {
  if (room) await room.disconnect(false);
  setConnection("connecting", "Connecting…");
  let grant;
  try {
    grant = await fetchToken();
  } catch (error) {
    setConnection("failed", `Connection failed: ${error.message}`);
    return;
  }

  // stopLocalTrackOnUnpublish: false keeps the preview running when the room
  // goes away, so a reconnect can publish the same tracks again.
  const current = new Room({ dynacast: true, stopLocalTrackOnUnpublish: false, videoCaptureDefaults: VIDEO });
  room = current;
  current
    .on(RoomEvent.Reconnecting, () => setConnection("reconnecting", "Reconnecting…"))
    .on(RoomEvent.Reconnected, () => setConnection("live", "Live"))
    .on(RoomEvent.Disconnected, (reason) => onDisconnected(current, reason))
    // The browser's own "Stop sharing" button unpublishes the screen track.
    .on(RoomEvent.LocalTrackUnpublished, reflect)
    .on(RoomEvent.MediaDevicesError, showMediaError);

  try {
    await current.connect(grant.url, grant.token);
    if (!previewStarted) setConnection("connecting", "Waiting for your camera and microphone…");
    await previewReady;
    if (room !== current || !connected()) return; // replaced or gone meanwhile
    for (const track of [tracks.camera, tracks.microphone]) {
      if (track) await current.localParticipant.publishTrack(track);
    }
    // Reconnected while paused: viewers keep seeing "Be right back", since then.
    if (pausedFrom) await current.localParticipant.setAttributes({ brb: pausedFrom.since });
  } catch (error) {
    if (room === current) {
      setConnection("failed", `Connection failed: ${error.message}`);
      // Keep the preview tracks: the reconnect button publishes them again.
      await current.disconnect(false);
    }
    return;
  }
  setConnection("live", "Live");
  tabs?.postMessage("live");
  reflect();
}

function onDisconnected(which, reason) {
  if (which !== room) return; // an earlier room, replaced by a reconnect
  reflect();
  switch (reason) {
    case DisconnectReason.CLIENT_INITIATED:
      return; // we did it (leaving the page, or reconnecting)
    case DisconnectReason.ROOM_DELETED:
    case DisconnectReason.ROOM_CLOSED:
      setConnection("idle", "The stream has ended.");
      if (ui.reconnect) ui.reconnect.hidden = true;
      return;
    case DisconnectReason.DUPLICATE_IDENTITY:
      setConnection("elsewhere", ELSEWHERE);
      return;
    case DisconnectReason.PARTICIPANT_REMOVED:
      setConnection("failed", "Connection failed: the server removed you from the room.");
      return;
    default:
      setConnection("failed", `Connection failed: the connection to the media server was lost (${DisconnectReason[reason] ?? "unknown reason"}).`);
  }
}

// --- Elapsed time -------------------------------------------------------------

function tickElapsed() {
  const started = Date.parse(section.dataset.startedAt);
  if (!ui.elapsed || Number.isNaN(started)) return;
  const s = Math.max(0, Math.floor((Date.now() - started) / 1000));
  const pad = (n) => String(n).padStart(2, "0");
  ui.elapsed.textContent = `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
}

// --- Recording duration ---------------------------------------------------------
// The recording panel is re-rendered by htmx every few seconds; the running
// duration ticks here from its data-since attribute.

function tickRecording() {
  const el = document.getElementById("recording-elapsed");
  if (!el) return;
  const since = Date.parse(el.dataset.since);
  if (Number.isNaN(since)) return;
  const s = Math.max(0, Math.floor((Date.now() - since) / 1000));
  const pad = (n) => String(n).padStart(2, "0");
  el.textContent = `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
}
tickRecording();
setInterval(tickRecording, 1000);
