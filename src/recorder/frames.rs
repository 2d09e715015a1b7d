//! What the two muxers (`webm`, `mp4`) share: the `Muxer` trait's `push`,
//! frames of both tracks put in time order before they are written, when a
//! cluster or fragment is cut, and how long a track's last frame lasts. Pure,
//! like the muxers.

use std::collections::VecDeque;

use super::webm::TrackKind;

/// Frames of the two tracks reach the caller through separate jitter buffers; holding
/// frames this long (in media time) lets them be written in timestamp order.
pub const REORDER_WINDOW_MS: u64 = 500;
/// A cluster or fragment is cut at a video keyframe once it is this old, so that
/// seeking lands on a keyframe without making them tiny when the sender sends many
/// keyframes.
const MIN_PIECE_MS: u64 = 1_000;
/// Cut even without a keyframe (WebRTC senders send keyframes only when asked).
pub const MAX_PIECE_MS: u64 = 5_000;
pub const AUDIO_ONLY_PIECE_MS: u64 = 2_000;
pub const MAX_PIECE_BYTES: usize = 4 << 20;
/// Frame durations assumed for the last frame of a track when the spacing of the
/// previous frames says nothing sensible.
pub const DEFAULT_VIDEO_FRAME_MS: u64 = 33;
pub const DEFAULT_AUDIO_FRAME_MS: u64 = 20;

/// A released frame's time in the file, from the file's origin: the first
/// video keyframe, or the first frame when there is no video track (the rule
/// `Muxer::push` states). `origin` is set by the frame that starts the file;
/// None for a frame before it (video before the first keyframe, or audio from
/// before it released late), which is dropped.
pub fn file_time(origin: &mut Option<u64>, has_video: bool, frame: &Frame) -> Option<u64> {
    let starts_file = frame.track == TrackKind::Video && frame.keyframe || !has_video;
    let origin = match *origin {
        Some(origin) => origin,
        None if !starts_file => return None,
        None => *origin.insert(frame.at_ms),
    };
    frame.at_ms.checked_sub(origin)
}

/// Whether a frame at `age_ms` into the open cluster or fragment (which holds
/// `bytes`, the frame `frame_bytes` more) starts a new one.
pub fn cut(
    has_video: bool,
    video_keyframe: bool,
    age_ms: u64,
    bytes: usize,
    frame_bytes: usize,
) -> bool {
    let due = if has_video {
        (video_keyframe && age_ms >= MIN_PIECE_MS) || age_ms >= MAX_PIECE_MS
    } else {
        age_ms >= AUDIO_ONLY_PIECE_MS
    };
    due || bytes + frame_bytes > MAX_PIECE_BYTES
}

/// A muxer (`webm::Muxer`, `mp4::Muxer`): frames go in through the reorder
/// window, and come out written into clusters or fragments.
pub trait Muxer {
    /// The frames waiting for the reorder window.
    fn reorder(&mut self) -> &mut Reorder;

    /// Writes a frame released from the reorder window into `out` (the
    /// pieces it completes; the frame itself may wait in an open one).
    fn write(&mut self, frame: Frame, out: &mut Vec<u8>);

    /// Adds one frame; `at_ms` is its time from the start of the recording, on
    /// one clock for both tracks. Returns one or more complete clusters or
    /// fragments when some are done.
    ///
    /// Video before the first video keyframe is dropped; with a video track,
    /// the file starts at the first video keyframe (time 0) and earlier audio
    /// is dropped. A timestamp not after the track's previous one is raised to
    /// just after it. Frames of a track the muxer was not given, and empty
    /// frames, are ignored.
    ///
    /// Frames wait 500 ms (of `at_ms`) to be put in time order across tracks,
    /// so pieces come out that much later; the muxer's `finish` writes the rest.
    fn push(
        &mut self,
        track: TrackKind,
        at_ms: u64,
        keyframe: bool,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for frame in self.reorder().push(track, at_ms, keyframe, data) {
            self.write(frame, &mut out);
        }
        (!out.is_empty()).then_some(out)
    }
}

/// One frame as pushed.
#[cfg_attr(test, derive(Clone))]
pub struct Frame {
    pub track: TrackKind,
    pub at_ms: u64,
    pub keyframe: bool,
    pub data: Vec<u8>,
}

/// Frames waiting for the reorder window.
pub struct Reorder {
    /// Which tracks the file has (index `TrackKind as usize`).
    tracks: [bool; 2],
    /// Sorted by `at_ms`.
    pending: VecDeque<Frame>,
    newest_ms: u64,
    /// Per track: the last `at_ms` pushed, for clamping.
    last_pushed_ms: [Option<u64>; 2],
    video_keyframe_seen: bool,
}

impl Reorder {
    pub fn new(video: bool, audio: bool) -> Self {
        let mut tracks = [false; 2];
        tracks[TrackKind::Video as usize] = video;
        tracks[TrackKind::Audio as usize] = audio;
        Reorder {
            tracks,
            pending: VecDeque::new(),
            newest_ms: 0,
            last_pushed_ms: [None; 2],
            video_keyframe_seen: false,
        }
    }

    /// Takes one frame and answers those now out of the window, in time order.
    ///
    /// Video before the first video keyframe is dropped. A timestamp not after the
    /// track's previous one is raised to just after it (two frames at one time are an
    /// error to demuxers; a switch or jitter can bring one early). Frames of a track
    /// the file does not have, and empty frames, are ignored.
    pub fn push(
        &mut self,
        track: TrackKind,
        at_ms: u64,
        keyframe: bool,
        data: &[u8],
    ) -> Vec<Frame> {
        if !self.tracks[track as usize] || data.is_empty() {
            return Vec::new();
        }
        if track == TrackKind::Video && !self.video_keyframe_seen {
            if !keyframe {
                return Vec::new();
            }
            self.video_keyframe_seen = true;
        }
        let last = &mut self.last_pushed_ms[track as usize];
        let at_ms = at_ms.max(last.map_or(0, |l| l + 1));
        *last = Some(at_ms);
        self.newest_ms = self.newest_ms.max(at_ms);

        let index = self
            .pending
            .iter()
            .rposition(|p| p.at_ms <= at_ms)
            .map_or(0, |i| i + 1);
        self.pending.insert(
            index,
            Frame {
                track,
                at_ms,
                keyframe,
                data: data.to_vec(),
            },
        );
        let mut ready = Vec::new();
        while self
            .pending
            .front()
            .is_some_and(|p| p.at_ms + REORDER_WINDOW_MS <= self.newest_ms)
        {
            ready.extend(self.pending.pop_front());
        }
        ready
    }

    /// Every frame still held, in time order (the end of the file).
    pub fn drain(&mut self) -> impl Iterator<Item = Frame> + use<> {
        std::mem::take(&mut self.pending).into_iter()
    }
}

/// Per track: the last file time written and the gap before it.
#[derive(Default, Clone, Copy)]
pub struct TrackClock {
    pub last_ms: Option<u64>,
    pub last_gap_ms: u64,
}

impl TrackClock {
    /// Notes a frame written at `t`.
    pub fn tick(&mut self, t: u64) {
        if let Some(last) = self.last_ms {
            self.last_gap_ms = t.saturating_sub(last);
        }
        self.last_ms = Some(t);
    }

    /// The gap the last frame is taken to last: the one before it, when sensible.
    pub fn last_duration_ms(&self, default_frame_ms: u64) -> u64 {
        if (1..=1_000).contains(&self.last_gap_ms) {
            self.last_gap_ms
        } else {
            default_frame_ms
        }
    }

    /// When the last frame ends.
    pub fn end_ms(&self, default_frame_ms: u64) -> u64 {
        self.last_ms
            .map_or(0, |last| last + self.last_duration_ms(default_frame_ms))
    }
}
