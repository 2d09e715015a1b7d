//! One recording session: the recorder joins the stream's room as a hidden,
//! subscribe-only participant (LiveKit's signal client for the WebSocket,
//! str0m for the WebRTC peer connection), picks the tracks viewers see — the
//! host's screen share while there is one, else their camera, and their
//! microphone — and hands their frames, as they arrive and without
//! re-encoding, to a muxer whose output streams to the bucket: WebM for VP8
//! and VP9 (what browsers send) and for sound alone, fragmented MP4 for
//! H.264 (what OBS sends over WHIP). The file's type is settled by the first
//! video frame written; a track in another codec later is left out (a gap).
//!
//! It never decides who may record (the caller did) and never touches the
//! recording's row except through the callbacks of `Progress`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use livekit_signaling::{SignalClient, SignalEvent, SignalOptions};
use str0m::change::SdpOffer;
use str0m::media::{MediaData, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::Notify;

use super::frames::Muxer as _;
use super::mp4;
use super::upload::{FileType, Upload};
use super::webm::{self, TrackKind};
use crate::livekit::Participant;

/// How long the recorder waits for the host's first video keyframe before it
/// records what there is (audio alone, when the host publishes no video).
const FIRST_VIDEO_WAIT: Duration = Duration::from_secs(10);
/// A recording that has received nothing for this long fails with a reason.
const NOTHING_RECEIVED: Duration = Duration::from_secs(30);
/// While waiting for a keyframe (start, a switch, loss), ask again this often.
const KEYFRAME_RETRY: Duration = Duration::from_millis(1000);
/// WebRTC senders send keyframes only when asked; the file's seek index
/// points at keyframes, so the recorder asks this often to keep seeks short.
const KEYFRAME_EVERY: Duration = Duration::from_secs(4);
/// A track whose last frame is older than this no longer holds its place
/// in the file against another that flows.
const STILL_HEARD: Duration = Duration::from_secs(2);

/// Why a session ended.
#[derive(Debug)]
pub enum Ended {
    /// The file is complete. `stopped`: stop was asked (or the room closed
    /// for good); otherwise the connection dropped while the stream may go
    /// on, and the caller records on in a new part.
    Complete {
        duration_ms: u64,
        size_bytes: u64,
        stopped: bool,
    },
    /// Another instance holds the recording now: this one wrote nothing final.
    LeaseLost,
}

/// How the loop of one session ended.
enum Exit {
    Stop,
    Dropped,
    LeaseLost,
}

/// Why a session failed, in words for the owner; the detail goes to the log.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("The recorder could not join the stream's room on the media server.")]
    Join,
    #[error("The recorder lost its connection to the media server.")]
    Connection,
    #[error("Nothing was recorded: the host sent no video or audio while recording.")]
    NothingReceived,
    #[error(
        "The host's video is {0}, which the built-in recorder cannot write yet (it writes VP8, VP9 and H.264)."
    )]
    Codec(String),
    #[error("Storage refused the recording: {0}. Ask the operator to check the S3 settings.")]
    Storage(String),
}

/// What the session reports back while it runs.
pub trait Progress: Send {
    /// The first frame was written: the recording is active.
    fn started(&mut self) -> impl std::future::Future<Output = ()> + Send;
    /// Called every few seconds: `Ok(true)` to go on, `Ok(false)` to finish
    /// (stop was asked elsewhere), `Err(())` when the lease is lost.
    fn keep_going(&mut self) -> impl std::future::Future<Output = Result<bool, ()>> + Send;
}

/// Everything a session needs to join.
pub struct Join {
    /// LiveKit's URL (http(s) or ws(s)); the signal client speaks ws(s).
    pub url: String,
    pub token: String,
    /// Where the file goes in the bucket.
    pub upload: Upload,
    /// Notified when stop is asked on this instance.
    pub stop: Arc<Notify>,
}

/// How often `Progress::keep_going` is asked.
pub const CHECK_EVERY: Duration = Duration::from_secs(3);

/// Records until stopped; see the module doc.
pub async fn record(join: Join, progress: &mut impl Progress) -> Result<Ended, SessionError> {
    let Join {
        url,
        token,
        upload,
        stop,
    } = join;
    let ws_url = ws_url(&url);
    let mut options = SignalOptions::default();
    options.auto_subscribe = true;
    options.adaptive_stream = false;
    options.region_failover = false;
    // No packet trailers: str0m hands frames on as they are.
    options.client_capabilities = Vec::new();
    let (signal, join_response, mut events) = SignalClient::connect(&ws_url, &token, options, None)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "recorder: joining the room");
            SessionError::Join
        })?;

    let local_ip = local_ip_towards(&url)
        .await
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let socket = UdpSocket::bind(SocketAddr::new(local_ip, 0))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "recorder: binding a UDP socket");
            SessionError::Connection
        })?;
    let local_addr = socket.local_addr().map_err(|_| SessionError::Connection)?;
    let mut rtc = RtcConfig::new()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .clear_codecs()
        .enable_vp8(true)
        .enable_vp9(true)
        .enable_h264(true)
        .enable_opus(true, false)
        // No hold-back for reordering: str0m keeps one depacketizer per media
        // line and drops packets numbered before the last it emitted. The SFU
        // reuses a line for a new track (a host reloading the page) under a
        // new SSRC whose numbering starts anywhere, and str0m resets the line
        // only for SSRCs it discovers, not for those an offer announces: with
        // a hold-back, half the time nothing of the new track came through.
        // Without it, a lost packet loses its frame at once (the recorder then
        // asks for a keyframe): a short gap, as the module doc promises.
        .set_reordering_size_video(0)
        .set_reordering_size_audio(0)
        .build(Instant::now());
    let candidate = Candidate::host(local_addr, "udp").map_err(|_| SessionError::Connection)?;
    rtc.add_local_candidate(candidate.clone());

    let mut room = Room::default();
    for p in &join_response.other_participants {
        room.update(p);
    }

    let mut recording = Recording::new(upload);
    let joined_at = Instant::now();
    let mut last_media = Instant::now();
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.tick().await;
    let mut buf = vec![0u8; 2000];
    let mut sent_candidate = false;

    let outcome: Result<Exit, SessionError> = 'session: loop {
        // Drain str0m until it has nothing more to say but when to wake it.
        let deadline = loop {
            let output = match rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(error = %e, "recorder: WebRTC");
                    break 'session Err(SessionError::Connection);
                }
            };
            match output {
                Output::Timeout(t) => {
                    // Whatever the host shows now is what is recorded (asking
                    // for a keyframe is a change: drain again after it).
                    if recording.follow(&room, &mut rtc) {
                        continue;
                    }
                    break t;
                }
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(Event::MediaAdded(added)) => {
                    let name = added.mid.to_string();
                    room.mids.insert(name.clone(), added.mid);
                    if let Some(media) = rtc.media(added.mid) {
                        let track = media.track_id();
                        let track = track.rsplit('|').next().unwrap_or(track);
                        room.by_mid.entry(name).or_insert_with(|| track.to_owned());
                    }
                }
                Output::Event(Event::MediaData(data)) => {
                    last_media = Instant::now();
                    room.mids.entry(data.mid.to_string()).or_insert(data.mid);
                    if let Some(sid) = room.track_of(data.mid).map(str::to_owned) {
                        room.heard.insert(sid, last_media);
                    }
                    match recording.frame(&room, data, &mut rtc) {
                        Ok(Some(first)) => {
                            if first {
                                progress.started().await;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => break 'session Err(e),
                    }
                }
                Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                )) => {
                    tracing::info!("recorder: media connection lost");
                    break 'session Err(SessionError::Connection);
                }
                Output::Event(_) => {}
            }
        };
        recording.flush().await;
        if recording.upload_failed {
            break 'session Err(SessionError::Storage(
                "a part of the file could not be uploaded".into(),
            ));
        }

        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
        tokio::select! {
            event = events.recv() => match event {
                Some(SignalEvent::Message(message)) => match *message {
                    proto::signal_response::Message::Offer(offer) => {
                        // The SFU reuses media lines for new tracks (a host
                        // reloading, a second screen share): each offer says
                        // anew which track each line carries.
                        for (mid, track) in tracks_by_mid(&offer.sdp).into_iter().chain(offer.mid_to_track_id.clone()) {
                            if room.by_mid.get(&mid).is_some_and(|old| *old != track) {
                                recording.line_changed(&mid);
                            }
                            room.by_mid.insert(mid, track);
                        }
                        tracing::debug!(lines = ?room.by_mid, "recorder: offer");
                        let answer = SdpOffer::from_sdp_string(&offer.sdp)
                            .map_err(|e| e.to_string())
                            .and_then(|offer| rtc.sdp_api().accept_offer(offer).map_err(|e| e.to_string()));
                        match answer {
                            Ok(answer) => {
                                signal.send(proto::signal_request::Message::Answer(proto::SessionDescription {
                                    r#type: "answer".into(),
                                    sdp: answer.to_sdp_string(),
                                    id: offer.id,
                                    ..Default::default()
                                })).await;
                                if !sent_candidate {
                                    sent_candidate = true;
                                    let init = serde_json::json!({
                                        "candidate": candidate.to_sdp_string().trim_start_matches("a="),
                                        "sdpMid": "0",
                                        "sdpMLineIndex": 0,
                                    });
                                    signal.send(proto::signal_request::Message::Trickle(proto::TrickleRequest {
                                        candidate_init: init.to_string(),
                                        target: proto::SignalTarget::Subscriber as i32,
                                        r#final: false,
                                    })).await;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "recorder: the media server's offer");
                                break 'session Err(SessionError::Connection);
                            }
                        }
                    }
                    proto::signal_response::Message::Trickle(trickle) => {
                        if trickle.target == proto::SignalTarget::Subscriber as i32
                            && let Some(c) = parse_candidate(&trickle.candidate_init)
                        {
                            rtc.add_remote_candidate(c);
                        }
                    }
                    proto::signal_response::Message::Update(update) => {
                        for p in &update.participants {
                            room.update(p);
                        }
                        tracing::debug!(tracks = ?room.tracks.keys().collect::<Vec<_>>(), "recorder: participants");
                    }
                    proto::signal_response::Message::TrackUnpublished(gone) => {
                        room.tracks.remove(&gone.track_sid);
                    }
                    proto::signal_response::Message::Leave(_) => break 'session Ok(Exit::Dropped),
                    _ => {}
                },
                Some(SignalEvent::Close(reason)) => {
                    tracing::info!(reason = %reason, "recorder: signal connection closed");
                    break 'session Ok(Exit::Dropped);
                }
                None => break 'session Ok(Exit::Dropped),
            },
            received = socket.recv_from(&mut buf) => {
                if let Ok((n, source)) = received
                    && let Ok(contents) = buf[..n].try_into()
                {
                    let input = Input::Receive(Instant::now(), Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: local_addr,
                        contents,
                    });
                    if rtc.accepts(&input) && let Err(e) = rtc.handle_input(input) {
                        tracing::debug!(error = %e, "recorder: a packet str0m refused");
                    }
                }
            }
            _ = sleep => {
                if let Err(e) = rtc.handle_input(Input::Timeout(Instant::now())) {
                    tracing::warn!(error = %e, "recorder: WebRTC timeout");
                    break 'session Err(SessionError::Connection);
                }
            }
            _ = stop.notified() => break 'session Ok(Exit::Stop),
            _ = check.tick() => {
                match progress.keep_going().await {
                    Ok(true) => {}
                    Ok(false) => break 'session Ok(Exit::Stop),
                    Err(()) => break 'session Ok(Exit::LeaseLost),
                }
                if !recording.started() && joined_at.elapsed() >= FIRST_VIDEO_WAIT && room.wanted_video(None).is_none() {
                    // No video to show (none published, or the camera is off): record the sound.
                    recording.start_audio_only();
                    // The file begins here, not at a first video frame: say
                    // so, or the recording would read "starting" throughout.
                    if recording.started() {
                        progress.started().await;
                    }
                }
                if last_media.elapsed() >= NOTHING_RECEIVED && !recording.started() {
                    break 'session Err(SessionError::NothingReceived);
                }
            }
        }
    };

    rtc.disconnect();
    signal.close().await;
    match outcome {
        Ok(Exit::Stop) => recording.finish(true).await,
        Ok(Exit::Dropped) => recording.finish(false).await,
        Ok(Exit::LeaseLost) => Ok(Ended::LeaseLost),
        Err(e) => {
            // What was recorded so far is kept when it can be.
            if recording.started() {
                tracing::warn!(error = %e, "recorder: keeping what was recorded before the failure");
                recording.finish(false).await
            } else {
                Err(e)
            }
        }
    }
}

/// LiveKit's URL as the signal client wants it.
fn ws_url(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        url.to_owned()
    }
}

/// The local address the system would use to reach LiveKit: the address the
/// media server can send our media to. (Connecting a UDP socket sends nothing.)
async fn local_ip_towards(url: &str) -> Option<IpAddr> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?.to_owned();
    let port = parsed.port_or_known_default().unwrap_or(7880);
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()?
        .find(|a| a.is_ipv4())?;
    let probe = UdpSocket::bind("0.0.0.0:0").await.ok()?;
    probe.connect(target).await.ok()?;
    Some(probe.local_addr().ok()?.ip())
}

/// A candidate from a trickle message (`{"candidate": "candidate:…", …}`).
fn parse_candidate(init: &str) -> Option<Candidate> {
    let value: serde_json::Value = serde_json::from_str(init).ok()?;
    let line = value.get("candidate")?.as_str()?;
    let line = line.trim_start_matches("a=");
    if line.is_empty() {
        return None;
    }
    Candidate::from_sdp_string(line).ok()
}

/// `a=mid` -> the track id of its `a=msid` (LiveKit writes
/// `{participant}|{track} {track}`), for every media line of an SDP.
fn tracks_by_mid(sdp: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut mid: Option<String> = None;
    let mut track: Option<String> = None;
    let mut flush = |mid: &mut Option<String>, track: &mut Option<String>| {
        if let (Some(m), Some(t)) = (mid.take(), track.take()) {
            out.push((m, t));
        }
    };
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            flush(&mut mid, &mut track);
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.to_owned());
        } else if let Some(msid) = line.strip_prefix("a=msid:") {
            let mut parts = msid.split_whitespace();
            let stream = parts.next().unwrap_or_default();
            let id = parts.next().unwrap_or(stream);
            track = Some(id.rsplit('|').next().unwrap_or(id).to_owned());
        }
    }
    flush(&mut mid, &mut track);
    out
}

/// What the recorder knows of the room's tracks.
#[derive(Default)]
struct Room {
    /// Track sid -> what it is.
    tracks: HashMap<String, Track>,
    /// Media line (its mid as text) -> the track it carries now.
    by_mid: HashMap<String, String>,
    /// Media line (as text) -> str0m's id for it.
    mids: HashMap<String, Mid>,
    /// Track sid -> when a frame of it last arrived.
    heard: HashMap<String, Instant>,
}

#[derive(Debug, Clone)]
struct Track {
    participant_sid: String,
    source: proto::TrackSource,
    video: bool,
    muted: bool,
}

impl Room {
    fn update(&mut self, p: &proto::ParticipantInfo) {
        // Only what the stream's publishers send is recorded.
        let gone = p.state == proto::participant_info::State::Disconnected as i32;
        self.tracks.retain(|_, t| t.participant_sid != p.sid);
        if gone || !Participant::parse(&p.identity).is_publisher() {
            return;
        }
        for t in &p.tracks {
            self.tracks.insert(
                t.sid.clone(),
                Track {
                    participant_sid: p.sid.clone(),
                    source: proto::TrackSource::try_from(t.source)
                        .unwrap_or(proto::TrackSource::Unknown),
                    video: t.r#type == proto::TrackType::Video as i32,
                    muted: t.muted,
                },
            );
        }
    }

    fn track_of(&self, mid: Mid) -> Option<&str> {
        self.by_mid.get(&mid.to_string()).map(String::as_str)
    }

    /// The video viewers see: a screen share while there is one, else the
    /// camera (an encoder's tracks may come without a source: its video).
    /// `current` stays while it still fits and flows.
    fn wanted_video(&self, current: Option<&str>) -> Option<String> {
        use proto::TrackSource as S;
        [S::ScreenShare, S::Camera, S::Unknown]
            .into_iter()
            .find_map(|source| self.pick(source, true, false, current))
    }

    /// The host's microphone (or an encoder's sound).
    fn wanted_audio(&self, current: Option<&str>) -> Option<String> {
        use proto::TrackSource as S;
        [S::Microphone, S::Unknown]
            .into_iter()
            .find_map(|source| self.pick(source, false, true, current))
    }

    /// Among the tracks of one kind and source, the one to write. A track
    /// can outlive its sender in the recorder's view (a host reloading
    /// publishes new tracks before the old ones are gone), so the one heard
    /// most recently wins; the current one stays while it is still heard, so
    /// that two senders at once do not make the file flap between them.
    fn pick(
        &self,
        source: proto::TrackSource,
        video: bool,
        muted_too: bool,
        current: Option<&str>,
    ) -> Option<String> {
        let candidates: Vec<&str> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.source == source && t.video == video && (muted_too || !t.muted))
            .map(|(sid, _)| sid.as_str())
            .collect();
        if let Some(current) = current
            && candidates.contains(&current)
            && self
                .heard
                .get(current)
                .is_some_and(|at| at.elapsed() < STILL_HEARD)
        {
            return Some(current.to_owned());
        }
        candidates
            .into_iter()
            .max_by(|a, b| self.heard.get(*a).cmp(&self.heard.get(*b)).then(b.cmp(a)))
            .map(str::to_owned)
    }

    fn mid_of(&self, sid: &str) -> Option<Mid> {
        self.by_mid
            .iter()
            .find(|(_, s)| s.as_str() == sid)
            .and_then(|(m, _)| self.mids.get(m).copied())
    }
}

/// The video codecs the recorder writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Vp8,
    Vp9,
    H264,
}

/// The file being written: WebM or fragmented MP4, one interface.
enum Muxer {
    Webm(Box<webm::Muxer>),
    Mp4(Box<mp4::Muxer>),
}

impl Muxer {
    fn file_type(&self) -> FileType {
        match self {
            Muxer::Webm(_) => FileType::Webm,
            Muxer::Mp4(_) => FileType::Mp4,
        }
    }

    fn header(&self) -> Vec<u8> {
        match self {
            Muxer::Webm(m) => m.header(),
            Muxer::Mp4(m) => m.header(),
        }
    }

    fn push(
        &mut self,
        kind: TrackKind,
        at_ms: u64,
        keyframe: bool,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        match self {
            Muxer::Webm(m) => m.push(kind, at_ms, keyframe, data),
            Muxer::Mp4(m) => m.push(kind, at_ms, keyframe, data),
        }
    }

    fn finish(self) -> webm::Finished {
        match self {
            Muxer::Webm(m) => m.finish(),
            Muxer::Mp4(m) => m.finish(),
        }
    }
}

/// What the file's video track is made from.
enum Video {
    Webm(webm::VideoTrack),
    Mp4(mp4::VideoTrack),
}

/// Per media line: where its RTP clock sits on the recording's clock.
struct Anchor {
    at_ms: u64,
    rtp_micros: u64,
}

/// The file being written.
struct Recording {
    upload: Option<Upload>,
    muxer: Option<Muxer>,
    /// When the recording's clock reads 0.
    t0: Option<Instant>,
    anchors: HashMap<Mid, Anchor>,
    /// The video track being written, and whether it still needs a keyframe.
    video: Option<String>,
    /// The audio track being written.
    audio: Option<String>,
    needs_keyframe: bool,
    asked_keyframe: Option<Instant>,
    has_audio: bool,
    /// The video codec the file was started with (a track in another codec
    /// cannot join it: its frames are left out, a gap).
    codec: Option<Codec>,
    /// Bytes for the uploader (and how far they reach, in ms), sent between
    /// two turns of the loop.
    pending: Vec<(Vec<u8>, u64)>,
    /// The file's type, for the uploader before its first bytes.
    begin_file: Option<FileType>,
    upload_failed: bool,
}

impl Recording {
    fn new(upload: Upload) -> Self {
        Self {
            upload: Some(upload),
            muxer: None,
            t0: None,
            anchors: HashMap::new(),
            video: None,
            audio: None,
            needs_keyframe: true,
            asked_keyframe: None,
            has_audio: false,
            codec: None,
            pending: Vec::new(),
            begin_file: None,
            upload_failed: false,
        }
    }

    fn started(&self) -> bool {
        self.muxer.is_some()
    }

    /// A media line now carries another track: its clock starts anew, and
    /// if it is the video being written, it needs a keyframe.
    fn line_changed(&mut self, mid: &str) {
        self.anchors.retain(|m, _| m.to_string() != mid);
        self.needs_keyframe = true;
        self.asked_keyframe = None;
    }

    /// Switches to the video viewers see now, asking for a keyframe; answers
    /// whether it asked (a change to `rtc`).
    fn follow(&mut self, room: &Room, rtc: &mut Rtc) -> bool {
        self.audio = room.wanted_audio(self.audio.as_deref());
        let wanted = room.wanted_video(self.video.as_deref());
        if wanted != self.video {
            tracing::debug!(video = ?wanted, audio = ?self.audio, "recorder: follows");
            self.video = wanted;
            self.needs_keyframe = true;
            self.asked_keyframe = None;
        }
        let every = if self.needs_keyframe {
            KEYFRAME_RETRY
        } else {
            KEYFRAME_EVERY
        };
        if (self.needs_keyframe || self.started())
            && let Some(sid) = &self.video
            && let Some(mid) = room.mid_of(sid)
            && self.asked_keyframe.is_none_or(|t| t.elapsed() >= every)
        {
            self.asked_keyframe = Some(Instant::now());
            if let Some(mut writer) = rtc.writer(mid) {
                return writer
                    .request_keyframe(None, str0m::media::KeyframeRequestKind::Pli)
                    .is_ok();
            }
        }
        false
    }

    fn start_audio_only(&mut self) {
        if self.muxer.is_none() && self.audio.is_some() {
            self.begin(None, true, Instant::now());
        }
    }

    fn begin(&mut self, video: Option<Video>, audio: bool, t0: Instant) {
        self.has_audio = audio;
        let audio = audio.then_some(webm::AudioTrack {
            channels: 2,
            sample_rate: 48_000,
        });
        let muxer = match video {
            Some(Video::Mp4(video)) => Muxer::Mp4(Box::new(mp4::Muxer::new(mp4::Tracks {
                video: Some(video),
                audio,
            }))),
            Some(Video::Webm(video)) => Muxer::Webm(Box::new(webm::Muxer::new(webm::Tracks {
                video: Some(video),
                audio,
            }))),
            None => Muxer::Webm(Box::new(webm::Muxer::new(webm::Tracks {
                video: None,
                audio,
            }))),
        };
        let header = muxer.header();
        self.begin_file = Some(muxer.file_type());
        self.muxer = Some(muxer);
        self.t0 = Some(t0);
        self.send(header, 0);
    }

    /// Queues bytes reaching `upto_ms` for the upload (sent after the drain: `flush`).
    fn send(&mut self, bytes: Vec<u8>, upto_ms: u64) {
        self.pending.push((bytes, upto_ms));
    }

    /// Hands the queued bytes to the uploader; waits when it is behind.
    async fn flush(&mut self) {
        if let Some(file_type) = self.begin_file.take()
            && let Some(upload) = &self.upload
            && upload.begin(file_type).await.is_err()
        {
            self.upload_failed = true;
        }
        for (bytes, upto_ms) in std::mem::take(&mut self.pending) {
            if let Some(upload) = &self.upload
                && upload.write(bytes, upto_ms).await.is_err()
            {
                self.upload_failed = true;
            }
        }
    }

    /// Takes one frame; `Ok(Some(true))` when it was the recording's first.
    fn frame(
        &mut self,
        room: &Room,
        data: MediaData,
        rtc: &mut Rtc,
    ) -> Result<Option<bool>, SessionError> {
        let Some(sid) = room.track_of(data.mid).map(str::to_owned) else {
            return Ok(None);
        };
        let is_video = self.video.as_deref() == Some(sid.as_str());
        let is_audio = !is_video && self.audio.as_deref() == Some(sid.as_str());
        if !is_video && !is_audio {
            return Ok(None);
        }
        let mut first = false;
        if is_video {
            let codec = match data.params.spec().codec {
                str0m::format::Codec::Vp8 => Codec::Vp8,
                str0m::format::Codec::Vp9 => Codec::Vp9,
                str0m::format::Codec::H264 => Codec::H264,
                other if self.muxer.is_none() => {
                    return Err(SessionError::Codec(format!("{other:?}")));
                }
                _ => return Ok(None),
            };
            if self.codec.is_some_and(|c| c != codec) {
                return Ok(None);
            }
            let keyframe = data.is_keyframe();
            if !data.contiguous && !keyframe {
                // Packets were lost: what follows cannot be decoded until a keyframe.
                self.needs_keyframe = true;
            }
            // An H.264 file starts from a keyframe that carries its
            // parameter sets (the MP4 header needs them).
            let video = match codec {
                _ if self.muxer.is_some() || !keyframe => None,
                Codec::H264 => mp4::VideoTrack::from_keyframe(&data.data).map(Video::Mp4),
                Codec::Vp8 => {
                    let (width, height) = webm::vp8_keyframe_size(&data.data).unwrap_or((640, 360));
                    Some(Video::Webm(webm::VideoTrack {
                        codec: webm::VideoCodec::Vp8,
                        width,
                        height,
                    }))
                }
                Codec::Vp9 => Some(Video::Webm(webm::VideoTrack {
                    codec: webm::VideoCodec::Vp9,
                    width: 0,
                    height: 0,
                })),
            };
            let unusable = self.muxer.is_none() && video.is_none();
            if (self.needs_keyframe && !keyframe) || unusable {
                if self
                    .asked_keyframe
                    .is_none_or(|t| t.elapsed() >= KEYFRAME_RETRY)
                {
                    self.asked_keyframe = Some(Instant::now());
                    if let Some(mut writer) = rtc.writer(data.mid) {
                        let _ =
                            writer.request_keyframe(None, str0m::media::KeyframeRequestKind::Pli);
                    }
                }
                return Ok(None);
            }
            self.needs_keyframe = false;
            if let Some(video) = video {
                let audio = self.audio.is_some();
                self.codec = Some(codec);
                self.begin(Some(video), audio, data.network_time);
                first = true;
            }
        } else if self.muxer.is_none() || !self.has_audio {
            return Ok(None);
        }
        let at = self.at_ms(&data);
        let kind = if is_video {
            TrackKind::Video
        } else {
            TrackKind::Audio
        };
        let keyframe = !is_video || data.is_keyframe();
        let cluster = self
            .muxer
            .as_mut()
            .and_then(|m| m.push(kind, at, keyframe, &data.data));
        if let Some(cluster) = cluster {
            // The muxer holds frames back for its reorder window.
            self.send(cluster, at.saturating_sub(500));
        }
        Ok(Some(first))
    }

    /// The frame's time on the recording's clock: its media line's RTP clock,
    /// anchored where the frame arrived, and re-anchored when the two drift
    /// apart by more than a second (a publisher restarting its clock, a switch).
    fn at_ms(&mut self, data: &MediaData) -> u64 {
        let t0 = self.t0.unwrap_or(data.network_time);
        let arrived = data.network_time.saturating_duration_since(t0).as_millis() as u64;
        let rtp = data.time.as_micros();
        let anchor = self.anchors.entry(data.mid).or_insert(Anchor {
            at_ms: arrived,
            rtp_micros: rtp,
        });
        let by_clock = rtp
            .checked_sub(anchor.rtp_micros)
            .map(|d| anchor.at_ms + d / 1000);
        match by_clock {
            Some(t) if t.abs_diff(arrived) <= 1000 => t,
            _ => {
                *anchor = Anchor {
                    at_ms: arrived,
                    rtp_micros: rtp,
                };
                arrived
            }
        }
    }

    async fn finish(mut self, stopped: bool) -> Result<Ended, SessionError> {
        let Some(upload) = self.upload.take() else {
            return Err(SessionError::Storage("the upload was lost".into()));
        };
        let Some(muxer) = self.muxer.take() else {
            return Err(SessionError::NothingReceived);
        };
        self.flush().await;
        let finished = muxer.finish();
        let duration_ms = finished.duration_ms;
        match upload.finish(finished.header, finished.tail).await {
            Ok(size_bytes) => Ok(Ended::Complete {
                duration_ms,
                size_bytes,
                stopped,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "recorder: completing the upload");
                Err(SessionError::Storage(
                    "the file could not be saved to the bucket".into(),
                ))
            }
        }
    }
}
