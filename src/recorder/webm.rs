//! WebM muxer for the recorder: packs already-encoded VP8/VP9 video and Opus audio
//! frames into a WebM (Matroska) byte stream, without re-encoding.
//!
//! Pure: no I/O, no async, no clock; it must not learn about S3, LiveKit or RTP. The
//! output is built for a multipart upload in which only the first part can be
//! rewritten at the end:
//!
//! ```text
//! file = header() ++ every chunk push() returned ++ finish().tail
//! then overwrite the first header().len() bytes with finish().header
//! ```
//!
//! The first header has a Segment of unknown size, no Duration and no Cues entry in
//! its SeekHead, so a recording cut short before `finish` still plays (as a live
//! stream would). The patched header has exactly the same length: the Segment size is
//! always an 8-byte vint, and the Duration and the Cues seek entry sit in EBML Void
//! placeholders of their size. Clusters have known sizes (buffered until complete)
//! and the Cues go last, so a finished file seeks in Chromium (FFmpeg's demuxer),
//! Firefox (nestegg) and ffprobe.
//!
//! Written by hand rather than with a crate: the `webm` crate wraps libwebm, whose
//! muxer seeks back over the whole file to finalize it; the pure-Rust crates are
//! readers, generic EBML tag writers (`webm-iterable`) that leave the cluster, cue and
//! placeholder bookkeeping (all of the work here) to us, or say they are not for
//! production (`ebml-webm` 0.2). The WebM subset written here is a few dozen elements.
//!
//! Opus: OpusHead with pre-skip 0 and CodecDelay 0, SeekPreRoll 80 ms. The recording
//! joins an encoder that has been running for a while and RTP timestamps already date
//! each packet's first sample, so there is no priming to discard; a pre-skip would
//! either shift audio against video or push the first timestamps below zero.

use super::frames::Muxer as _;
use super::frames::{
    AUDIO_ONLY_PIECE_MS, DEFAULT_AUDIO_FRAME_MS, DEFAULT_VIDEO_FRAME_MS, Frame, MAX_PIECE_MS,
    Reorder, TrackClock,
};

/// What the recording contains; at least one of the two.
#[derive(Clone, Debug)]
pub struct Tracks {
    pub video: Option<VideoTrack>,
    pub audio: Option<AudioTrack>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    Vp9,
}

/// `width` and `height` go into the first header; the finished header carries the
/// size of the first keyframe written instead when it can be parsed, so a guess
/// (even 0x0) is fine.
#[derive(Clone, Debug)]
pub struct VideoTrack {
    pub codec: VideoCodec,
    pub width: u32,
    pub height: u32,
}

/// Opus. `channels` is 1 or 2 (channel mapping family 0).
#[derive(Clone, Debug)]
pub struct AudioTrack {
    pub channels: u8,
    pub sample_rate: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackKind {
    Video,
    Audio,
}

/// The end of a recording: append `tail`, then overwrite the start with `header`.
#[derive(Debug)]
pub struct Finished {
    pub tail: Vec<u8>,
    /// Same length as `Muxer::header()`.
    pub header: Vec<u8>,
    pub duration_ms: u64,
    /// Frames written (frames dropped before the first keyframe not counted).
    pub frames: u64,
    /// The `at_ms` that became time 0 of the file, if anything was written.
    pub started_at_ms: Option<u64>,
}

// Clusters are cut as `frames::cut` says; block timestamps are i16 offsets from
// their cluster's.
const _: () = assert!(MAX_PIECE_MS < i16::MAX as u64 && AUDIO_ONLY_PIECE_MS < MAX_PIECE_MS);

const OPUS_SEEK_PRE_ROLL_NS: u64 = 80_000_000;

const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
/// Segment ID (4 bytes) and its 8-byte size.
const SEGMENT_HEAD_LEN: usize = 12;
/// Cluster ID (4 bytes) and its 8-byte size, filled in when the cluster is complete.
const CLUSTER_HEAD_LEN: usize = 12;
/// Seek { SeekID (4-byte ID), SeekPosition (8-byte uint) }.
const SEEK_ENTRY_LEN: usize = 3 + (3 + 4) + (3 + 8);
/// SeekHead with room for Info, Tracks and Cues.
const SEEK_REGION_LEN: usize = 4 + 1 + 3 * SEEK_ENTRY_LEN;
/// Duration: 2-byte ID, 1-byte size, 8-byte float.
const DURATION_LEN: usize = 11;

pub struct Muxer {
    tracks: Tracks,
    header_len: usize,
    segment_data_offset: u64,
    /// Bytes of the file written so far (the header, and every cluster and
    /// the Cues as they are added to what goes to the caller).
    emitted: u64,
    /// Frames waiting for the reorder window.
    order: Reorder,
    origin_ms: Option<u64>,
    cluster: Option<OpenCluster>,
    cues: Vec<Cue>,
    /// Per track: the last file timestamp written and the gap before it.
    clocks: [TrackClock; 2],
    first_keyframe_size: Option<(u32, u32)>,
    frames: u64,
}

struct OpenCluster {
    start_ms: u64,
    cue: bool,
    bytes: Vec<u8>,
}

struct Cue {
    time_ms: u64,
    /// From the start of the Segment's data.
    position: u64,
}

/// What only `finish` knows.
struct Totals {
    segment_size: u64,
    duration_ms: u64,
    cues_position: Option<u64>,
    video_size: Option<(u32, u32)>,
}

impl Muxer {
    /// Panics if `tracks` has neither video nor audio.
    pub fn new(tracks: Tracks) -> Self {
        assert!(
            tracks.video.is_some() || tracks.audio.is_some(),
            "a recording needs a video or an audio track"
        );
        let order = Reorder::new(tracks.video.is_some(), tracks.audio.is_some());
        let mut muxer = Muxer {
            tracks,
            header_len: 0,
            segment_data_offset: 0,
            emitted: 0,
            order,
            origin_ms: None,
            cluster: None,
            cues: Vec::new(),
            clocks: [TrackClock::default(); 2],
            first_keyframe_size: None,
            frames: 0,
        };
        let header = muxer.build_header(None);
        muxer.header_len = header.len();
        muxer.segment_data_offset = (ebml_header().len() + SEGMENT_HEAD_LEN) as u64;
        muxer.emitted = header.len() as u64;
        muxer
    }

    /// The first bytes of the file, before any cluster.
    pub fn header(&self) -> Vec<u8> {
        self.build_header(None)
    }

    /// Writes what is still buffered and the Cues, and returns them with the final
    /// header.
    pub fn finish(mut self) -> Finished {
        let mut tail = Vec::new();
        for frame in self.order.drain() {
            self.write(frame, &mut tail);
        }
        self.close_cluster(&mut tail);

        let mut cues_position = None;
        if !self.cues.is_empty() {
            cues_position = Some(self.emitted - self.segment_data_offset);
            let before = tail.len();
            let cue_track = self.track_number(if self.tracks.video.is_some() {
                TrackKind::Video
            } else {
                TrackKind::Audio
            });
            master(&mut tail, id::CUES, |b| {
                for cue in &self.cues {
                    master(b, id::CUE_POINT, |b| {
                        put_uint(b, id::CUE_TIME, cue.time_ms);
                        master(b, id::CUE_TRACK_POSITIONS, |b| {
                            put_uint(b, id::CUE_TRACK, cue_track);
                            put_uint(b, id::CUE_CLUSTER_POSITION, cue.position);
                        });
                    });
                }
            });
            self.emitted += (tail.len() - before) as u64;
        }

        let duration_ms = self.duration_ms();
        let header = self.build_header(Some(&Totals {
            segment_size: self.emitted - self.segment_data_offset,
            duration_ms,
            cues_position,
            video_size: self.first_keyframe_size,
        }));
        assert_eq!(
            header.len(),
            self.header_len,
            "the patched header must fit in place"
        );
        Finished {
            tail,
            header,
            duration_ms,
            frames: self.frames,
            started_at_ms: self.origin_ms,
        }
    }

    fn track_number(&self, track: TrackKind) -> u64 {
        match (track, self.tracks.video.is_some()) {
            (TrackKind::Video, _) | (TrackKind::Audio, false) => 1,
            (TrackKind::Audio, true) => 2,
        }
    }

    fn close_cluster(&mut self, out: &mut Vec<u8>) {
        let Some(mut cluster) = self.cluster.take() else {
            return;
        };
        let size = (cluster.bytes.len() - CLUSTER_HEAD_LEN) as u64;
        cluster.bytes[4..CLUSTER_HEAD_LEN].copy_from_slice(&size_8(size));
        if cluster.cue {
            let position = self.emitted - self.segment_data_offset;
            self.cues.push(Cue {
                time_ms: cluster.start_ms,
                position,
            });
        }
        self.emitted += cluster.bytes.len() as u64;
        if out.is_empty() {
            *out = cluster.bytes;
        } else {
            out.extend_from_slice(&cluster.bytes);
        }
    }

    /// The end of the last frame of the longer track.
    fn duration_ms(&self) -> u64 {
        let video = self.clocks[TrackKind::Video as usize].end_ms(DEFAULT_VIDEO_FRAME_MS);
        let audio = self.clocks[TrackKind::Audio as usize].end_ms(DEFAULT_AUDIO_FRAME_MS);
        video.max(audio)
    }

    fn build_header(&self, totals: Option<&Totals>) -> Vec<u8> {
        let mut out = ebml_header();
        put_id(&mut out, id::SEGMENT);
        match totals {
            Some(totals) => out.extend_from_slice(&size_8(totals.segment_size)),
            None => out.extend_from_slice(&UNKNOWN_SIZE),
        }

        let mut info = Vec::new();
        master(&mut info, id::INFO, |b| {
            put_uint(b, id::TIMESTAMP_SCALE, 1_000_000); // 1 ms ticks
            match totals {
                Some(totals) => put_float(b, id::DURATION, totals.duration_ms as f64),
                None => put_void(b, DURATION_LEN),
            }
            put_element(b, id::MUXING_APP, b"stagepass");
            put_element(b, id::WRITING_APP, b"stagepass");
        });

        let mut tracks = Vec::new();
        master(&mut tracks, id::TRACKS, |b| {
            if let Some(video) = &self.tracks.video {
                let (width, height) = totals
                    .and_then(|t| t.video_size)
                    .unwrap_or((video.width, video.height));
                master(b, id::TRACK_ENTRY, |b| {
                    let number = self.track_number(TrackKind::Video);
                    put_uint(b, id::TRACK_NUMBER, number);
                    put_uint(b, id::TRACK_UID, number);
                    put_uint(b, id::TRACK_TYPE, 1);
                    put_uint(b, id::FLAG_LACING, 0);
                    let codec: &[u8] = match video.codec {
                        VideoCodec::Vp8 => b"V_VP8",
                        VideoCodec::Vp9 => b"V_VP9",
                    };
                    put_element(b, id::CODEC_ID, codec);
                    master(b, id::VIDEO, |b| {
                        // Fixed width: the finished header must keep its length.
                        put_uint_fixed(b, id::PIXEL_WIDTH, width.into(), 4);
                        put_uint_fixed(b, id::PIXEL_HEIGHT, height.into(), 4);
                    });
                });
            }
            if let Some(audio) = &self.tracks.audio {
                master(b, id::TRACK_ENTRY, |b| {
                    let number = self.track_number(TrackKind::Audio);
                    put_uint(b, id::TRACK_NUMBER, number);
                    put_uint(b, id::TRACK_UID, number);
                    put_uint(b, id::TRACK_TYPE, 2);
                    put_uint(b, id::FLAG_LACING, 0);
                    put_element(b, id::CODEC_ID, b"A_OPUS");
                    put_element(b, id::CODEC_PRIVATE, &opus_head(audio));
                    put_uint(b, id::CODEC_DELAY, 0);
                    put_uint(b, id::SEEK_PRE_ROLL, OPUS_SEEK_PRE_ROLL_NS);
                    master(b, id::AUDIO, |b| {
                        put_float(b, id::SAMPLING_FREQUENCY, audio.sample_rate.into());
                        put_uint(b, id::CHANNELS, audio.channels.into());
                    });
                });
            }
        });

        // Positions are from the start of the Segment's data, where the SeekHead is.
        let info_position = SEEK_REGION_LEN as u64;
        let tracks_position = info_position + info.len() as u64;
        let seek_start = out.len();
        master(&mut out, id::SEEK_HEAD, |b| {
            put_seek(b, id::INFO, info_position);
            put_seek(b, id::TRACKS, tracks_position);
            if let Some(cues) = totals.and_then(|t| t.cues_position) {
                put_seek(b, id::CUES, cues);
            }
        });
        let seek_len = out.len() - seek_start;
        if seek_len < SEEK_REGION_LEN {
            put_void(&mut out, SEEK_REGION_LEN - seek_len);
        }
        debug_assert_eq!(out.len() - seek_start, SEEK_REGION_LEN);
        out.extend_from_slice(&info);
        out.extend_from_slice(&tracks);
        out
    }
}

impl super::frames::Muxer for Muxer {
    fn reorder(&mut self) -> &mut Reorder {
        &mut self.order
    }

    /// Writes a frame released from the reorder buffer into the current cluster,
    /// completing that cluster first if the frame starts a new one.
    fn write(&mut self, frame: Frame, out: &mut Vec<u8>) {
        let video_keyframe = frame.track == TrackKind::Video && frame.keyframe;
        let has_video = self.tracks.video.is_some();
        let Some(mut t) = super::frames::file_time(&mut self.origin_ms, has_video, &frame) else {
            return;
        };

        let track_number = self.track_number(frame.track) as u8;
        if let Some(cluster) = &self.cluster {
            // A frame later than the reorder window: negative block offsets upset
            // Chromium's WebM parser, so it moves up to the cluster's start.
            t = t.max(cluster.start_ms);
            let age = t - cluster.start_ms;
            if super::frames::cut(
                has_video,
                video_keyframe,
                age,
                cluster.bytes.len(),
                frame.data.len(),
            ) {
                self.close_cluster(out);
            }
        }
        let cluster = self.cluster.get_or_insert_with(|| {
            let mut bytes = Vec::with_capacity(64 * 1024);
            put_id(&mut bytes, id::CLUSTER);
            bytes.extend_from_slice(&UNKNOWN_SIZE);
            put_uint(&mut bytes, id::TIMESTAMP, t);
            OpenCluster {
                start_ms: t,
                cue: video_keyframe || !has_video,
                bytes,
            }
        });

        let b = &mut cluster.bytes;
        put_id(b, id::SIMPLE_BLOCK);
        put_size(b, 4 + frame.data.len() as u64);
        b.push(0x80 | track_number); // 1-byte vint
        b.extend_from_slice(&((t - cluster.start_ms) as i16).to_be_bytes());
        // Every Opus packet decodes on its own.
        let keyframe = video_keyframe || frame.track == TrackKind::Audio;
        b.push(if keyframe { 0x80 } else { 0 });
        b.extend_from_slice(&frame.data);

        self.clocks[frame.track as usize].tick(t);
        if video_keyframe && self.first_keyframe_size.is_none() {
            self.first_keyframe_size = match self.tracks.video.as_ref().map(|v| v.codec) {
                Some(VideoCodec::Vp8) => vp8_keyframe_size(&frame.data),
                Some(VideoCodec::Vp9) => vp9_keyframe_size(&frame.data),
                None => None,
            };
        }
        self.frames += 1;
    }
}

fn ebml_header() -> Vec<u8> {
    let mut out = Vec::new();
    master(&mut out, id::EBML, |b| {
        put_uint(b, id::EBML_VERSION, 1);
        put_uint(b, id::EBML_READ_VERSION, 1);
        put_uint(b, id::EBML_MAX_ID_LENGTH, 4);
        put_uint(b, id::EBML_MAX_SIZE_LENGTH, 8);
        put_element(b, id::DOC_TYPE, b"webm");
        // 4 for CodecDelay and SeekPreRoll; readers need only 2.
        put_uint(b, id::DOC_TYPE_VERSION, 4);
        put_uint(b, id::DOC_TYPE_READ_VERSION, 2);
    });
    out
}

/// RFC 7845 identification header, channel mapping family 0.
fn opus_head(audio: &AudioTrack) -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1); // version
    head.push(audio.channels);
    head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip: see the module comment
    head.extend_from_slice(&audio.sample_rate.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // mapping family
    head
}

/// Whether a VP8 frame is a keyframe (frame tag bit 0 clear, start code present).
pub fn vp8_is_keyframe(frame: &[u8]) -> bool {
    vp8_keyframe_size(frame).is_some()
}

/// Width and height of a VP8 keyframe (RFC 6386 section 9.1); None for other frames.
pub fn vp8_keyframe_size(frame: &[u8]) -> Option<(u32, u32)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((width.into(), height.into()))
}

/// Whether a VP9 frame (or superframe, whose first frame counts) is a keyframe.
pub fn vp9_is_keyframe(frame: &[u8]) -> bool {
    vp9_keyframe_size(frame).is_some()
}

/// Width and height of a VP9 keyframe, from its uncompressed header (VP9 bitstream
/// specification 6.2); None for other frames.
pub fn vp9_keyframe_size(frame: &[u8]) -> Option<(u32, u32)> {
    let mut bits = Bits {
        data: frame,
        position: 0,
    };
    if bits.read(2)? != 2 {
        return None; // frame_marker
    }
    let profile_low = bits.read(1)?;
    let profile = (bits.read(1)? << 1) | profile_low;
    if profile == 3 {
        bits.read(1)?;
    }
    // show_existing_frame, then frame_type (0 = KEY_FRAME)
    if bits.read(1)? == 1 || bits.read(1)? != 0 {
        return None;
    }
    bits.read(2)?; // show_frame, error_resilient_mode
    if bits.read(24)? != 0x49_83_42 {
        return None;
    }
    if profile >= 2 {
        bits.read(1)?; // ten_or_twelve_bit
    }
    let color_space = bits.read(3)?;
    let odd_profile = profile == 1 || profile == 3;
    if color_space != 7 {
        // color_range, then subsampling_x, subsampling_y, reserved_zero
        bits.read(if odd_profile { 4 } else { 1 })?;
    } else if odd_profile {
        bits.read(1)?;
    }
    Some((bits.read(16)? + 1, bits.read(16)? + 1))
}

struct Bits<'a> {
    data: &'a [u8],
    position: usize,
}

impl Bits<'_> {
    fn read(&mut self, count: usize) -> Option<u32> {
        let mut value = 0;
        for _ in 0..count {
            let byte = self.data.get(self.position / 8)?;
            value = (value << 1) | u32::from((byte >> (7 - self.position % 8)) & 1);
            self.position += 1;
        }
        Some(value)
    }
}

// ---- EBML writing ----------------------------------------------------------------

fn put_id(out: &mut Vec<u8>, id: u32) {
    // IDs carry their own length marker: write them without leading zero bytes.
    let skip = (id.leading_zeros() / 8) as usize;
    out.extend_from_slice(&id.to_be_bytes()[skip..]);
}

/// Shortest vint; all ones is reserved for "unknown", hence the `>=`.
fn put_size(out: &mut Vec<u8>, size: u64) {
    let mut len = 1;
    while len < 8 && size >= (1 << (7 * len)) - 1 {
        len += 1;
    }
    let marked = size | (1 << (7 * len));
    out.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

fn size_8(size: u64) -> [u8; 8] {
    debug_assert!(size < (1 << 56) - 1);
    (size | (1 << 56)).to_be_bytes()
}

fn put_element(out: &mut Vec<u8>, id: u32, body: &[u8]) {
    put_id(out, id);
    put_size(out, body.len() as u64);
    out.extend_from_slice(body);
}

fn master(out: &mut Vec<u8>, id: u32, children: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    children(&mut body);
    put_element(out, id, &body);
}

fn put_uint(out: &mut Vec<u8>, id: u32, value: u64) {
    let len = (8 - value.leading_zeros() as usize / 8).max(1);
    put_uint_fixed(out, id, value, len);
}

fn put_uint_fixed(out: &mut Vec<u8>, id: u32, value: u64, len: usize) {
    put_element(out, id, &value.to_be_bytes()[8 - len..]);
}

fn put_float(out: &mut Vec<u8>, id: u32, value: f64) {
    put_element(out, id, &value.to_be_bytes());
}

fn put_seek(out: &mut Vec<u8>, target: u32, position: u64) {
    master(out, id::SEEK, |b| {
        put_element(b, id::SEEK_ID, &target.to_be_bytes());
        put_uint_fixed(b, id::SEEK_POSITION, position, 8);
    });
}

/// An EBML Void of exactly `total` bytes, ID and size included.
fn put_void(out: &mut Vec<u8>, total: usize) {
    put_id(out, id::VOID);
    if total - 2 < 127 {
        put_size(out, (total - 2) as u64);
        out.resize(out.len() + total - 2, 0);
    } else {
        out.extend_from_slice(&size_8((total - 9) as u64));
        out.resize(out.len() + total - 9, 0);
    }
}

mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const VOID: u32 = 0xEC;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const SEEK_HEAD: u32 = 0x114D_9B74;
    pub const SEEK: u32 = 0x4DBB;
    pub const SEEK_ID: u32 = 0x53AB;
    pub const SEEK_POSITION: u32 = 0x53AC;
    pub const INFO: u32 = 0x1549_A966;
    pub const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
    pub const DURATION: u32 = 0x4489;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const FLAG_LACING: u32 = 0x9C;
    pub const CODEC_ID: u32 = 0x86;
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    pub const CODEC_DELAY: u32 = 0x56AA;
    pub const SEEK_PRE_ROLL: u32 = 0x56BB;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const AUDIO: u32 = 0xE1;
    pub const SAMPLING_FREQUENCY: u32 = 0xB5;
    pub const CHANNELS: u32 = 0x9F;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMESTAMP: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const CUES: u32 = 0x1C53_BB6B;
    pub const CUE_POINT: u32 = 0xBB;
    pub const CUE_TIME: u32 = 0xB3;
    pub const CUE_TRACK_POSITIONS: u32 = 0xB7;
    pub const CUE_TRACK: u32 = 0xF7;
    pub const CUE_CLUSTER_POSITION: u32 = 0xF1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::ffmpeg_tests::*;
    use std::collections::HashMap;

    // ---- a small EBML reader, to check what the muxer wrote ----------------------

    #[derive(Clone, Copy, Debug)]
    struct Element {
        id: u32,
        start: usize,
        data: usize,
        end: usize,
        unknown_size: bool,
    }

    fn read_vint(b: &[u8], pos: usize) -> (u64, usize) {
        let len = b[pos].leading_zeros() as usize + 1;
        assert!(len <= 8, "invalid vint at {pos}");
        let mut value = u64::from(b[pos]) & (0xFF >> len);
        for byte in &b[pos + 1..pos + len] {
            value = (value << 8) | u64::from(*byte);
        }
        (value, len)
    }

    fn children(b: &[u8], from: usize, to: usize) -> Vec<Element> {
        let mut out = Vec::new();
        let mut pos = from;
        while pos < to {
            let id_len = b[pos].leading_zeros() as usize + 1;
            assert!(id_len <= 4, "invalid element ID at {pos}");
            let id = b[pos..pos + id_len]
                .iter()
                .fold(0, |id, x| (id << 8) | u32::from(*x));
            let (size, size_len) = read_vint(b, pos + id_len);
            let data = pos + id_len + size_len;
            let unknown_size = size == (1 << (7 * size_len)) - 1;
            let end = if unknown_size {
                to
            } else {
                data + size as usize
            };
            assert!(
                end <= to,
                "element {id:x} at {pos} overruns its parent ({end} > {to})"
            );
            out.push(Element {
                id,
                start: pos,
                data,
                end,
                unknown_size,
            });
            pos = end;
        }
        out
    }

    fn uint(b: &[u8], e: &Element) -> u64 {
        b[e.data..e.end]
            .iter()
            .fold(0, |v, x| (v << 8) | u64::from(*x))
    }

    fn float(b: &[u8], e: &Element) -> f64 {
        f64::from_be_bytes(b[e.data..e.end].try_into().expect("8-byte float"))
    }

    fn text(b: &[u8], e: &Element) -> String {
        String::from_utf8(b[e.data..e.end].to_vec()).expect("UTF-8")
    }

    #[derive(Debug)]
    struct Parsed {
        doc_type: String,
        segment: Element,
        /// SeekHead entries, each with the ID found at the position it names.
        seeks: Vec<(u32, u64, u32)>,
        duration_ms: Option<f64>,
        tracks: Vec<ParsedTrack>,
        clusters: Vec<ParsedCluster>,
        /// (CueTime, CueTrack, CueClusterPosition)
        cues: Vec<(u64, u64, u64)>,
    }

    #[derive(Debug, Default)]
    struct ParsedTrack {
        number: u64,
        codec: String,
        width: u64,
        height: u64,
        codec_private: Vec<u8>,
        channels: u64,
    }

    #[derive(Debug)]
    struct ParsedCluster {
        position: u64,
        size: usize,
        time_ms: u64,
        blocks: Vec<Block>,
    }

    #[derive(Debug, Clone)]
    struct Block {
        track: u64,
        relative: i16,
        time_ms: u64,
        keyframe: bool,
        data: Vec<u8>,
    }

    fn parse(b: &[u8]) -> Parsed {
        let top = children(b, 0, b.len());
        assert_eq!(top.len(), 2, "EBML header and one Segment");
        assert_eq!(top[0].id, id::EBML);
        let doc_type = children(b, top[0].data, top[0].end)
            .iter()
            .find(|e| e.id == id::DOC_TYPE)
            .map(|e| text(b, e))
            .expect("DocType");
        let segment = top[1];
        assert_eq!(segment.id, id::SEGMENT);
        let level1 = children(b, segment.data, segment.end);
        let id_at = |position: u64| {
            level1
                .iter()
                .find(|e| e.start == segment.data + position as usize)
                .map_or(0, |e| e.id)
        };
        let mut parsed = Parsed {
            doc_type,
            segment,
            seeks: Vec::new(),
            duration_ms: None,
            tracks: Vec::new(),
            clusters: Vec::new(),
            cues: Vec::new(),
        };
        for e in &level1 {
            let inner = || children(b, e.data, e.end);
            match e.id {
                id::SEEK_HEAD => {
                    for seek in inner() {
                        let fields = children(b, seek.data, seek.end);
                        let target = uint(b, &fields[0]) as u32;
                        let position = uint(b, &fields[1]);
                        parsed.seeks.push((target, position, id_at(position)));
                    }
                }
                id::INFO => {
                    let inner = inner();
                    assert!(
                        inner
                            .iter()
                            .any(|f| f.id == id::TIMESTAMP_SCALE && uint(b, f) == 1_000_000)
                    );
                    parsed.duration_ms = inner
                        .iter()
                        .find(|f| f.id == id::DURATION)
                        .map(|f| float(b, f));
                }
                id::TRACKS => {
                    for entry in inner() {
                        let mut track = ParsedTrack::default();
                        for f in children(b, entry.data, entry.end) {
                            match f.id {
                                id::TRACK_NUMBER => track.number = uint(b, &f),
                                id::CODEC_ID => track.codec = text(b, &f),
                                id::CODEC_PRIVATE => {
                                    track.codec_private = b[f.data..f.end].to_vec()
                                }
                                id::VIDEO | id::AUDIO => {
                                    for g in children(b, f.data, f.end) {
                                        match g.id {
                                            id::PIXEL_WIDTH => track.width = uint(b, &g),
                                            id::PIXEL_HEIGHT => track.height = uint(b, &g),
                                            id::CHANNELS => track.channels = uint(b, &g),
                                            _ => {}
                                        }
                                    }
                                }
                                _ => {}
                            }
                        }
                        parsed.tracks.push(track);
                    }
                }
                id::CLUSTER => {
                    assert!(!e.unknown_size, "clusters have known sizes");
                    let inner = inner();
                    let time_ms = uint(
                        b,
                        inner
                            .iter()
                            .find(|f| f.id == id::TIMESTAMP)
                            .expect("Timestamp"),
                    );
                    let mut blocks = Vec::new();
                    for f in &inner {
                        // FFmpeg (whose files feed the real-frame tests) writes some
                        // frames as BlockGroups.
                        let (block, keyframe) = match f.id {
                            id::SIMPLE_BLOCK => (*f, None),
                            0xA0 => {
                                let group = children(b, f.data, f.end);
                                let block = *group.iter().find(|g| g.id == 0xA1).expect("Block");
                                (block, Some(!group.iter().any(|g| g.id == 0xFB)))
                            }
                            _ => continue,
                        };
                        let (track, len) = read_vint(b, block.data);
                        let at = block.data + len;
                        let relative = i16::from_be_bytes([b[at], b[at + 1]]);
                        let flags = b[at + 2];
                        assert_eq!(flags & 0x06, 0, "no lacing");
                        blocks.push(Block {
                            track,
                            relative,
                            time_ms: (time_ms as i64 + i64::from(relative)) as u64,
                            keyframe: keyframe.unwrap_or(flags & 0x80 != 0),
                            data: b[at + 3..block.end].to_vec(),
                        });
                    }
                    parsed.clusters.push(ParsedCluster {
                        position: (e.start - segment.data) as u64,
                        size: e.end - e.start,
                        time_ms,
                        blocks,
                    });
                }
                id::CUES => {
                    for point in inner() {
                        let fields = children(b, point.data, point.end);
                        let time = uint(b, &fields[0]);
                        let positions = children(b, fields[1].data, fields[1].end);
                        let get = |want| {
                            uint(
                                b,
                                positions.iter().find(|p| p.id == want).expect("cue field"),
                            )
                        };
                        parsed
                            .cues
                            .push((time, get(id::CUE_TRACK), get(id::CUE_CLUSTER_POSITION)));
                    }
                }
                // FFmpeg's files, read for the real-frame tests, end with Tags.
                id::VOID | 0x1254_C367 => {}
                other => panic!("unexpected top-level element {other:x}"),
            }
        }
        parsed
    }

    impl Parsed {
        fn blocks(&self) -> impl Iterator<Item = &Block> {
            self.clusters.iter().flat_map(|c| &c.blocks)
        }

        fn cluster_times(&self) -> Vec<u64> {
            self.clusters.iter().map(|c| c.time_ms).collect()
        }

        /// What every file we write must satisfy.
        fn assert_well_formed(&self, file_len: usize) {
            assert_eq!(self.doc_type, "webm");
            assert_eq!(self.segment.end, file_len);
            let mut last = HashMap::new();
            for block in self.blocks() {
                assert!(block.relative >= 0, "negative block offset: {block:?}");
                let previous = last.insert(block.track, block.time_ms).unwrap_or(0);
                assert!(
                    block.time_ms >= previous,
                    "track {} goes back in time",
                    block.track
                );
            }
            for &(time, _, position) in &self.cues {
                let cluster = self
                    .clusters
                    .iter()
                    .find(|c| c.position == position)
                    .unwrap_or_else(|| {
                        panic!("cue at {time} ms points at no cluster ({position})")
                    });
                assert_eq!(cluster.time_ms, time);
                assert!(cluster.blocks[0].keyframe);
            }
        }
    }

    // ---- synthetic frames -------------------------------------------------------

    fn vp8_frame(keyframe: bool, width: u16, height: u16, len: usize) -> Vec<u8> {
        let mut frame = vec![0x5a; len.max(10)];
        if keyframe {
            frame[0] = 0x10; // bit 0 clear: keyframe; bit 4: show_frame
            frame[3..6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
            frame[6..8].copy_from_slice(&width.to_le_bytes());
            frame[8..10].copy_from_slice(&height.to_le_bytes());
        } else {
            frame[0] = 0x11;
        }
        frame
    }

    fn video_and_audio(width: u32, height: u32) -> Tracks {
        Tracks {
            video: Some(VideoTrack {
                codec: VideoCodec::Vp8,
                width,
                height,
            }),
            audio: Some(AudioTrack {
                channels: 2,
                sample_rate: 48_000,
            }),
        }
    }

    fn video(at_ms: u64, keyframe: bool) -> Frame {
        Frame {
            track: TrackKind::Video,
            at_ms,
            keyframe,
            data: vp8_frame(keyframe, 640, 360, 200),
        }
    }

    struct Muxed {
        header_len: usize,
        /// As uploaded before `finish` patched the header.
        unpatched: Vec<u8>,
        file: Vec<u8>,
        finished: Finished,
    }

    fn mux(tracks: Tracks, frames: &[Frame]) -> Muxed {
        let mut muxer = Muxer::new(tracks);
        let mut unpatched = muxer.header();
        for f in frames {
            if let Some(chunk) = muxer.push(f.track, f.at_ms, f.keyframe, &f.data) {
                unpatched.extend_from_slice(&chunk);
            }
        }
        let header_len = muxer.header().len();
        let finished = muxer.finish();
        unpatched.extend_from_slice(&finished.tail);
        assert_eq!(finished.header.len(), header_len);
        let mut file = finished.header.clone();
        file.extend_from_slice(&unpatched[header_len..]);
        Muxed {
            header_len,
            unpatched,
            file,
            finished,
        }
    }

    #[test]
    fn vp8_keyframe_header_gives_size() {
        assert_eq!(
            vp8_keyframe_size(&vp8_frame(true, 1280, 720, 50)),
            Some((1280, 720))
        );
        assert!(vp8_is_keyframe(&vp8_frame(true, 640, 360, 50)));
        assert!(!vp8_is_keyframe(&vp8_frame(false, 640, 360, 50)));
        // The top two bits of each dimension are the scaling mode, not size.
        let mut scaled = vp8_frame(true, 640, 360, 50);
        scaled[7] |= 0xc0;
        assert_eq!(vp8_keyframe_size(&scaled), Some((640, 360)));
        assert_eq!(vp8_keyframe_size(&[0x10, 0, 0, 0x9d, 0x01]), None);
    }

    #[test]
    fn vp9_keyframe_header_gives_size() {
        // frame_marker 10, profile 0, show_existing 0, KEY_FRAME, show_frame 1,
        // error_resilient 0, sync code, color_space 2 + color_range 0, then sizes - 1.
        let mut bits = String::from("10000010");
        bits += "010010011000001101000010";
        bits += "0100";
        bits += &format!("{:016b}{:016b}", 1279, 719);
        bits += "0000"; // pad to whole bytes
        let bytes: Vec<u8> = bits
            .as_bytes()
            .chunks(8)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap())
            .collect();
        assert_eq!(vp9_keyframe_size(&bytes), Some((1280, 720)));
        let mut inter = bytes.clone();
        inter[0] |= 0x04; // frame_type 1
        assert!(!vp9_is_keyframe(&inter));
        assert!(!vp9_is_keyframe(&bytes[..5]));
    }

    #[test]
    fn finished_file_has_seekable_layout() {
        let mut frames: Vec<Frame> = times(0, 33, 300).map(|t| video(t, t % 1980 == 0)).collect();
        frames.extend(times(0, 20, 500).map(audio));
        let muxed = mux(video_and_audio(640, 360), &arrival_order(frames, 40));

        // Only the header changes, and it keeps its length.
        assert_eq!(muxed.file.len(), muxed.unpatched.len());
        assert_eq!(
            muxed.file[muxed.header_len..],
            muxed.unpatched[muxed.header_len..]
        );

        let parsed = parse(&muxed.file);
        parsed.assert_well_formed(muxed.file.len());
        assert!(!parsed.segment.unknown_size);
        let seeks: Vec<(u32, u32)> = parsed
            .seeks
            .iter()
            .map(|&(want, _, found)| (want, found))
            .collect();
        assert_eq!(
            seeks,
            [
                (id::INFO, id::INFO),
                (id::TRACKS, id::TRACKS),
                (id::CUES, id::CUES)
            ]
        );
        assert_eq!(parsed.duration_ms, Some(10_000.0)); // last audio packet 9980 + 20
        assert_eq!(muxed.finished.duration_ms, 10_000);
        assert_eq!(muxed.finished.frames, 800);
        assert_eq!(muxed.finished.started_at_ms, Some(0));

        assert_eq!(parsed.tracks.len(), 2);
        let (v, a) = (&parsed.tracks[0], &parsed.tracks[1]);
        assert_eq!(
            (v.number, v.codec.as_str(), v.width, v.height),
            (1, "V_VP8", 640, 360)
        );
        assert_eq!((a.number, a.codec.as_str(), a.channels), (2, "A_OPUS", 2));
        assert_eq!(&a.codec_private[..8], b"OpusHead");
        assert_eq!(a.codec_private.len(), 19);

        // A cluster per keyframe (every 1980 ms), each indexed.
        assert_eq!(parsed.cluster_times(), [0, 1980, 3960, 5940, 7920]);
        assert_eq!(
            parsed.cues.iter().map(|c| c.0).collect::<Vec<_>>(),
            parsed.cluster_times()
        );
        assert!(parsed.cues.iter().all(|c| c.1 == 1));
        assert_eq!(parsed.blocks().filter(|b| b.track == 1).count(), 300);
        assert_eq!(parsed.blocks().filter(|b| b.track == 2).count(), 500);
        assert!(parsed.blocks().filter(|b| b.track == 2).all(|b| b.keyframe));
        assert_eq!(
            parsed
                .blocks()
                .filter(|b| b.track == 1 && b.keyframe)
                .count(),
            5
        );
        // Audio arrived 40 ms behind video but is written in time order.
        for cluster in &parsed.clusters {
            assert!(
                cluster
                    .blocks
                    .windows(2)
                    .all(|w| w[0].time_ms <= w[1].time_ms)
            );
        }

        // Cut short before `finish`, the upload still reads as a live stream.
        let live = parse(&muxed.unpatched);
        live.assert_well_formed(muxed.unpatched.len());
        assert!(live.segment.unknown_size);
        assert_eq!(live.duration_ms, None);
        assert_eq!(live.seeks.len(), 2);
        assert_eq!(live.blocks().count(), 800);
    }

    #[test]
    fn recording_starts_at_first_video_keyframe() {
        let mut frames: Vec<Frame> = times(0, 33, 10).map(|t| video(t, false)).collect();
        frames.extend(times(330, 33, 60).map(|t| video(t, t == 330)));
        frames.extend(times(0, 20, 100).map(audio));
        let muxed = mux(video_and_audio(640, 360), &arrival_order(frames, 0));
        let parsed = parse(&muxed.file);
        parsed.assert_well_formed(muxed.file.len());

        assert_eq!(muxed.finished.started_at_ms, Some(330));
        let first = &parsed.clusters[0].blocks[0];
        assert_eq!((first.track, first.time_ms, first.keyframe), (1, 0, true));
        assert_eq!(parsed.blocks().filter(|b| b.track == 1).count(), 60);
        // Audio from 340 ms on: 83 packets; the 17 before the keyframe are dropped.
        assert_eq!(parsed.blocks().filter(|b| b.track == 2).count(), 83);
        assert_eq!(parsed.blocks().find(|b| b.track == 2).unwrap().time_ms, 10);
    }

    #[test]
    fn nothing_is_written_without_a_keyframe() {
        let mut frames: Vec<Frame> = times(0, 33, 100).map(|t| video(t, false)).collect();
        frames.extend(times(0, 20, 100).map(audio));
        let muxed = mux(video_and_audio(640, 360), &arrival_order(frames, 0));
        assert!(muxed.finished.tail.is_empty());
        assert_eq!(muxed.file.len(), muxed.header_len);
        assert_eq!((muxed.finished.frames, muxed.finished.duration_ms), (0, 0));
        let parsed = parse(&muxed.file);
        assert!(parsed.clusters.is_empty() && parsed.cues.is_empty());
        assert_eq!(parsed.seeks.len(), 2, "no Cues to point at");
    }

    #[test]
    fn clusters_wait_a_second_for_the_next_keyframe() {
        let frames: Vec<Frame> = times(0, 100, 50).map(|t| video(t, t % 500 == 0)).collect();
        let parsed = parse(&mux(video_and_audio(640, 360), &frames).file);
        assert_eq!(parsed.cluster_times(), [0, 1000, 2000, 3000, 4000]);
        assert_eq!(parsed.cues.len(), 5);
    }

    #[test]
    fn clusters_without_keyframes_end_after_five_seconds() {
        // One keyframe, as from a WebRTC sender nobody asks for more, then a gap
        // longer than a block offset can span.
        let mut frames: Vec<Frame> = times(0, 100, 120).map(|t| video(t, t == 0)).collect();
        frames.extend(times(60_000, 100, 5).map(|t| video(t, false)));
        let muxed = mux(video_and_audio(640, 360), &frames);
        let parsed = parse(&muxed.file);
        parsed.assert_well_formed(muxed.file.len());
        assert_eq!(parsed.cluster_times(), [0, 5000, 10_000, 60_000]);
        assert_eq!(parsed.cues.iter().map(|c| c.0).collect::<Vec<_>>(), [0]);
        assert_eq!(muxed.finished.duration_ms, 60_500);
    }

    #[test]
    fn clusters_stay_under_four_mebibytes() {
        let frames: Vec<Frame> = times(0, 100, 10)
            .map(|t| Frame {
                data: vp8_frame(t == 0, 640, 360, 1_500_000),
                ..video(t, t == 0)
            })
            .collect();
        let parsed = parse(&mux(video_and_audio(640, 360), &frames).file);
        assert_eq!(parsed.cluster_times(), [0, 200, 400, 600, 800]);
        assert!(
            parsed
                .clusters
                .iter()
                .all(|c| c.size <= crate::recorder::frames::MAX_PIECE_BYTES)
        );
    }

    #[test]
    fn audio_only_clusters_every_two_seconds() {
        let tracks = Tracks {
            video: None,
            audio: Some(AudioTrack {
                channels: 2,
                sample_rate: 48_000,
            }),
        };
        let frames: Vec<Frame> = times(5_000, 20, 350).map(audio).collect();
        let muxed = mux(tracks, &frames);
        let parsed = parse(&muxed.file);
        parsed.assert_well_formed(muxed.file.len());
        assert_eq!(parsed.tracks.len(), 1);
        assert_eq!(
            (parsed.tracks[0].number, parsed.tracks[0].codec.as_str()),
            (1, "A_OPUS")
        );
        assert_eq!(parsed.cluster_times(), [0, 2000, 4000, 6000]);
        assert_eq!(
            parsed.cues.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(),
            [(0, 1), (2000, 1), (4000, 1), (6000, 1)]
        );
        assert_eq!(muxed.finished.duration_ms, 7_000);
        assert_eq!(muxed.finished.started_at_ms, Some(5_000));
    }

    #[test]
    fn jitter_and_time_going_backwards_are_absorbed() {
        let mut frames: Vec<Frame> = times(0, 33, 120).map(|t| video(t, t % 990 == 0)).collect();
        // Video clock steps back by 50 ms once.
        frames[60].at_ms -= 50;
        frames[61].at_ms -= 50;
        // Audio arrives 800 ms behind video: later than the reorder window.
        frames.extend(times(0, 20, 200).map(audio));
        let muxed = mux(video_and_audio(640, 360), &arrival_order(frames, 800));
        let parsed = parse(&muxed.file);
        parsed.assert_well_formed(muxed.file.len());
        assert_eq!(parsed.blocks().filter(|b| b.track == 1).count(), 120);
        assert_eq!(parsed.blocks().filter(|b| b.track == 2).count(), 200);
    }

    #[test]
    fn finished_header_takes_the_first_keyframe_size() {
        let frames = [Frame {
            data: vp8_frame(true, 1280, 720, 100),
            ..video(0, true)
        }];
        let muxed = mux(video_and_audio(0, 0), &frames);
        let track = |file: &[u8]| {
            let t = &parse(file).tracks[0];
            (t.width, t.height)
        };
        assert_eq!(track(&muxed.unpatched), (0, 0));
        assert_eq!(track(&muxed.file), (1280, 720));
    }

    // ---- real frames, checked by FFmpeg -----------------------------------------

    /// A test-pattern WebM from FFmpeg: 30 fps video and 48 kHz stereo Opus.
    fn encode(out: &str, encoder: &str, size: &str, seconds: u32, gop: Option<u32>) {
        let video = format!("testsrc=size={size}:rate=30");
        let seconds = seconds.to_string();
        let gop = gop.map(|g| g.to_string());
        let mut args = vec![
            "-v", "error", "-y", "-f", "lavfi", "-i", &video, "-f", "lavfi",
        ];
        args.extend(["-i", "sine=frequency=440:sample_rate=48000", "-t", &seconds]);
        args.extend([
            "-c:v",
            encoder,
            "-b:v",
            "1M",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
        ]);
        if let Some(gop) = &gop {
            args.extend(["-g", gop]);
        }
        args.extend(["-c:a", "libopus", "-ac", "2", out]);
        run_ok("ffmpeg", &args);
    }

    /// The frames of an FFmpeg WebM, as the recorder would get them from WebRTC.
    fn frames_of(path: &str, shift_ms: u64) -> Vec<Frame> {
        let parsed = parse(&std::fs::read(path).unwrap());
        let kind = |number| {
            let track = parsed.tracks.iter().find(|t| t.number == number).unwrap();
            if track.codec.starts_with("V_") {
                TrackKind::Video
            } else {
                TrackKind::Audio
            }
        };
        parsed
            .blocks()
            .map(|b| Frame {
                track: kind(b.track),
                at_ms: b.time_ms + shift_ms,
                keyframe: b.keyframe,
                data: b.data.clone(),
            })
            .collect()
    }

    fn write_muxed(dir: &TempDir, tracks: Tracks, frames: &[Frame]) -> (String, String, Parsed) {
        let muxed = mux(tracks, frames);
        let parsed = parse(&muxed.file);
        parsed.assert_well_formed(muxed.file.len());
        let (file, live) = (dir.path("out.webm"), dir.path("live.webm"));
        std::fs::write(&file, &muxed.file).unwrap();
        std::fs::write(&live, &muxed.unpatched).unwrap();
        (file, live, parsed)
    }

    fn check_real_recording(encoder: &str, codec: VideoCodec, codec_name: &str) {
        let dir = TempDir::new(codec_name);
        let source = dir.path("source.webm");
        encode(&source, encoder, "640x360", 4, Some(30));
        // As if the recording had been going for 1.2 s when the first keyframe came,
        // with audio delivered 30 ms after video.
        let frames = arrival_order(frames_of(&source, 1_200), 30);
        let first_key = frames
            .iter()
            .find(|f| f.keyframe && f.track == TrackKind::Video)
            .unwrap();
        let size = match codec {
            VideoCodec::Vp8 => vp8_keyframe_size(&first_key.data),
            VideoCodec::Vp9 => vp9_keyframe_size(&first_key.data),
        };
        assert_eq!(size, Some((640, 360)));
        let tracks = Tracks {
            video: Some(VideoTrack {
                codec,
                width: 640,
                height: 360,
            }),
            audio: Some(AudioTrack {
                channels: 2,
                sample_rate: 48_000,
            }),
        };
        let (file, live, parsed) = write_muxed(&dir, tracks, &frames);
        assert!(
            parsed.cues.len() >= 3,
            "a cue per keyframe second: {:?}",
            parsed.cues
        );

        let p = probe(&file);
        eprintln!(
            "{codec_name}: ffprobe {}x{}, {} video frames, {} audio frames, {} s",
            p["streams.stream.0.width"],
            p["streams.stream.0.height"],
            p["streams.stream.0.nb_read_frames"],
            p["streams.stream.1.nb_read_frames"],
            p["format.duration"],
        );
        assert_eq!(p["streams.stream.0.codec_name"], codec_name);
        assert_eq!(
            (
                p["streams.stream.0.width"].as_str(),
                p["streams.stream.0.height"].as_str()
            ),
            ("640", "360")
        );
        assert_near(
            "video frames",
            number(&p, "streams.stream.0.nb_read_frames"),
            120.0,
        );
        assert_near("duration", number(&p, "format.duration"), 4.0);
        assert_eq!(p["streams.stream.1.codec_name"], "opus");
        assert_eq!(p["streams.stream.1.channels"], "2");
        assert_near(
            "audio frames",
            number(&p, "streams.stream.1.nb_read_frames"),
            200.0,
        );

        assert_decodes_cleanly(&file, None);
        assert_decodes_cleanly(&file, Some("2"));
        // The seek lands on the keyframe at 2 s, found through the Cues.
        let output = run_ok(
            "ffprobe",
            &[
                "-v",
                "error",
                "-read_intervals",
                "2%+#1",
                "-select_streams",
                "v",
                "-show_entries",
                "frame=pts_time,key_frame",
                "-of",
                "flat",
                &file,
            ],
        );
        let shown = String::from_utf8(output.stdout).unwrap();
        assert!(
            shown.contains("pts_time=\"2.000000\"") && shown.contains("key_frame=1"),
            "{shown}"
        );

        // The upload as it stood before the header was patched still plays.
        let p = probe(&live);
        assert_near(
            "frames of the unfinished file",
            number(&p, "streams.stream.0.nb_read_frames"),
            120.0,
        );
    }

    #[test]
    fn real_vp8_and_opus_play_and_seek() {
        check_real_recording("libvpx", VideoCodec::Vp8, "vp8");
    }

    #[test]
    fn real_vp9_and_opus_play_and_seek() {
        check_real_recording("libvpx-vp9", VideoCodec::Vp9, "vp9");
    }

    #[test]
    fn real_resolution_switch_decodes_cleanly() {
        let dir = TempDir::new("switch");
        let (camera, screen) = (dir.path("camera.webm"), dir.path("screen.webm"));
        encode(&camera, "libvpx", "640x360", 2, None);
        encode(&screen, "libvpx", "1280x720", 2, None);
        let mut frames = frames_of(&camera, 0);
        let screen_frames = frames_of(&screen, 2_000);
        let first = screen_frames
            .iter()
            .find(|f| f.track == TrackKind::Video)
            .unwrap();
        assert!(first.keyframe);
        assert_eq!(vp8_keyframe_size(&first.data), Some((1280, 720)));
        frames.extend(screen_frames);
        let (file, _, parsed) =
            write_muxed(&dir, video_and_audio(640, 360), &arrival_order(frames, 0));
        assert_eq!(
            (parsed.tracks[0].width, parsed.tracks[0].height),
            (640, 360)
        );

        assert_decodes_cleanly(&file, None);
        let p = probe(&file);
        eprintln!(
            "switch: ffprobe {} video frames, {} s",
            p["streams.stream.0.nb_read_frames"], p["format.duration"]
        );
        assert_near(
            "video frames",
            number(&p, "streams.stream.0.nb_read_frames"),
            120.0,
        );
        assert_near("duration", number(&p, "format.duration"), 4.0);
    }
}
