//! Fragmented MP4 muxer for the recorder: packs already-encoded H.264 video (as
//! str0m's depacketizer outputs it, Annex B) and Opus audio into an ISO BMFF byte
//! stream, without re-encoding. The twin of `webm.rs`, for H.264 publishers (OBS over
//! WHIP); the caller picks one by the video codec.
//!
//! Pure: no I/O, no async, no clock; it must not learn about S3, LiveKit or RTP. The
//! output is built for the same multipart upload as the WebM one, in which only the
//! first part can be rewritten at the end:
//!
//! ```text
//! file = header() ++ every chunk push() returned ++ finish().tail
//! then overwrite the first header().len() bytes with finish().header
//! ```
//!
//! Layout: `ftyp`, `moov` (empty sample tables, `mvex` with `mehd` and `trex`), a
//! `free` box reserved for the index, then one `moof` + `mdat` per fragment. Each
//! fragment holds both tracks' samples (a `traf` each: `tfhd` with
//! default-base-is-moof, `tfdt`, one `trun` with per-sample duration, size and
//! flags). Fragments are cut like webm.rs's clusters: at a video keyframe once the
//! fragment is a second old, forced at 5 s or 4 MiB, every 2 s without video.
//!
//! The first header has zero durations and an empty `free` box, so a recording cut
//! short before `finish` still plays: readers walk the fragments one by one. The
//! patched header has exactly the same length: every duration is a 64-bit field of a
//! version-1 box (`mvhd`, `tkhd`, `mdhd`, `mehd`), and a `sidx` is written into the
//! start of the reserved space, the rest staying a `free` box. A `sidx` must come
//! before the fragments it indexes, which is why it has to be reserved up front. It
//! indexes the video track (the audio track otherwise) with one reference per run of
//! fragments starting at a keyframe; FFmpeg (so Chromium, and ffprobe) then opens
//! the file after the first fragment and seeks by the index instead of reading every
//! `moof`. The room holds `INDEX_ROOM` references, 6 hours at one per 4 s; longer
//! recordings merge adjacent references (each still starting with a keyframe).
//!
//! H.264: sample entry `avc3`, whose `avcC` holds the first SPS and PPS and whose
//! samples carry their parameter sets in band. The resolution can change mid-recording
//! (a simulcast layer switch, a screen share), and `avc1` would forbid the new SPS in
//! the samples. Keyframes that come without SPS/PPS get the latest ones put in front,
//! so every keyframe a seek lands on decodes on its own. Samples are in AVCC form
//! (4-byte lengths); access unit delimiters are dropped. Timestamps come from RTP,
//! which has no composition offsets: B-frames (never sent over WebRTC) are not
//! supported. Video timescale 90 kHz, audio 48 kHz; a sample lasts until the next
//! one of its track, so each track is held back by one sample, and the last one lasts
//! as long as the gap before it (as in webm.rs).
//!
//! Opus: `Opus` sample entry with `dOps` (the Opus-in-ISOBMFF mapping), pre-skip 0
//! for the reason webm.rs gives: the recording joins a running encoder and RTP
//! timestamps already date each packet's first sample.
//!
//! Boxes are written by hand, like webm.rs: the few dozen boxes of this subset are
//! less code than the glue to a box crate, the fixed-size patching needs control of
//! every field's width (a crate picking version 0 or 1 by value would change the
//! header's length), and the SPS parser needed for the track size is forty lines (the
//! `h264-reader` crate would bring a NAL-handling framework for one function).

use std::collections::VecDeque;

pub use super::webm::{AudioTrack, Finished, TrackKind};

/// What the recording contains; at least one of the two.
#[derive(Clone, Debug)]
pub struct Tracks {
    pub video: Option<VideoTrack>,
    pub audio: Option<AudioTrack>,
}

/// H.264, described by the parameter sets of its first keyframe.
#[derive(Clone, Debug)]
pub struct VideoTrack {
    sps: Vec<u8>,
    pps: Vec<u8>,
    info: SpsInfo,
}

impl VideoTrack {
    /// From the first keyframe (an H.264 access unit in Annex B form, as str0m's
    /// depacketizer outputs it: start codes, SPS/PPS before the IDR). None when it
    /// holds no SPS and PPS, or an SPS that does not parse.
    pub fn from_keyframe(annex_b: &[u8]) -> Option<VideoTrack> {
        let sps = nal_units(annex_b).find(|n| nal_type(n) == NAL_SPS)?;
        let pps = nal_units(annex_b).find(|n| nal_type(n) == NAL_PPS)?;
        Some(VideoTrack {
            info: parse_sps(sps)?,
            sps: sps.to_vec(),
            pps: pps.to_vec(),
        })
    }

    pub fn width(&self) -> u32 {
        self.info.width
    }

    pub fn height(&self) -> u32 {
        self.info.height
    }
}

/// Whether an access unit (Annex B) holds an IDR picture.
pub fn h264_is_keyframe(annex_b: &[u8]) -> bool {
    nal_units(annex_b).any(|n| nal_type(n) == NAL_IDR)
}

/// A fragment is cut at a video keyframe once it is this old, so that seeking lands
/// on a keyframe without making fragments tiny when the sender sends many keyframes.
const MIN_FRAGMENT_MS: u64 = 1_000;
/// Cut even without a keyframe (WebRTC senders send keyframes only when asked).
const MAX_FRAGMENT_MS: u64 = 5_000;
const AUDIO_ONLY_FRAGMENT_MS: u64 = 2_000;
const MAX_FRAGMENT_BYTES: usize = 4 << 20;
/// Frames of the two tracks reach the caller through separate jitter buffers; holding
/// frames this long (in media time) lets them be written in timestamp order.
const REORDER_WINDOW_MS: u64 = 500;

/// Index references the header has room for: a 6-hour recording at one fragment
/// every 4 s, before any merging.
const INDEX_ROOM: usize = 6 * 3600 / 4;
/// `sidx` version 1 up to its references: box header, version and flags,
/// reference_ID, timescale, two 64-bit times, reserved, reference_count.
const SIDX_HEAD_LEN: usize = 8 + 4 + 4 + 4 + 8 + 8 + 2 + 2;
const SIDX_REFERENCE_LEN: usize = 12;
/// The smallest box (a `free` with nothing in it).
const BOX_HEAD_LEN: usize = 8;

const MOVIE_TIMESCALE: u64 = 1_000;
const VIDEO_TIMESCALE: u64 = 90_000;
/// Opus in ISO BMFF always runs at 48 kHz.
const AUDIO_TIMESCALE: u64 = 48_000;
const DEFAULT_VIDEO_FRAME_MS: u64 = 33;
const DEFAULT_AUDIO_FRAME_MS: u64 = 20;

// trun/trex sample flags (ISO 14496-12 8.8.3.1).
const SYNC_SAMPLE: u32 = 0x0200_0000; // depends on no other sample
const NON_SYNC_SAMPLE: u32 = 0x0101_0000; // depends on others, is_non_sync_sample

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

pub struct Muxer {
    tracks: Tracks,
    header_len: usize,
    /// References the reserved index space holds.
    index_room: usize,
    /// Frames waiting for the reorder window, sorted by `at_ms`.
    pending: VecDeque<Pending>,
    newest_ms: u64,
    /// Per track (index `TrackKind as usize`): the last `at_ms` pushed, for clamping.
    last_pushed_ms: [Option<u64>; 2],
    video_keyframe_seen: bool,
    origin_ms: Option<u64>,
    /// Per track: the last sample written, whose duration the next one decides.
    held: [Option<Sample>; 2],
    fragment: Option<OpenFragment>,
    /// Every fragment written, for the index.
    written: Vec<WrittenFragment>,
    sequence: u32,
    /// Per track: the last file time written and the gap before it.
    clocks: [TrackClock; 2],
    /// The parameter sets in force, for keyframes sent without them.
    sps: Vec<u8>,
    pps: Vec<u8>,
    frames: u64,
}

struct Pending {
    track: TrackKind,
    at_ms: u64,
    keyframe: bool,
    data: Vec<u8>,
}

/// A sample in file form (AVCC or Opus), its time in ms from the file's start.
struct Sample {
    t: u64,
    sync: bool,
    data: Vec<u8>,
}

struct OpenFragment {
    start_ms: u64,
    /// Opened by a video keyframe (or audio only): seeking can start here.
    sap: bool,
    runs: [Run; 2],
}

#[derive(Default)]
struct Run {
    /// Decode time of the first sample, in the track's timescale.
    base: u64,
    /// (duration in ticks, size, flags)
    samples: Vec<(u32, u32, u32)>,
    data: Vec<u8>,
}

struct WrittenFragment {
    size: u64,
    sap: bool,
    /// Duration of the index track's samples in it, in that track's timescale.
    duration: u64,
}

/// One `sidx` reference: a run of fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reference {
    size: u64,
    duration: u64,
    sap: bool,
}

#[derive(Default, Clone, Copy)]
struct TrackClock {
    last_ms: Option<u64>,
    last_gap_ms: u64,
}

impl TrackClock {
    /// The gap the last frame is taken to last: the one before it, when sensible.
    fn last_duration_ms(&self, default_frame_ms: u64) -> u64 {
        if (1..=1_000).contains(&self.last_gap_ms) {
            self.last_gap_ms
        } else {
            default_frame_ms
        }
    }

    fn end_ms(&self, default_frame_ms: u64) -> u64 {
        self.last_ms
            .map_or(0, |last| last + self.last_duration_ms(default_frame_ms))
    }
}

/// What only `finish` knows.
struct Totals {
    duration_ms: u64,
    /// Per track, in ms.
    track_ms: [u64; 2],
    references: Vec<Reference>,
}

impl Muxer {
    /// Panics if `tracks` has neither video nor audio.
    pub fn new(tracks: Tracks) -> Self {
        Self::with_index_room(tracks, INDEX_ROOM)
    }

    fn with_index_room(tracks: Tracks, index_room: usize) -> Self {
        assert!(
            tracks.video.is_some() || tracks.audio.is_some(),
            "a recording needs a video or an audio track"
        );
        let (sps, pps) = tracks
            .video
            .as_ref()
            .map(|v| (v.sps.clone(), v.pps.clone()))
            .unwrap_or_default();
        let mut muxer = Muxer {
            tracks,
            header_len: 0,
            index_room,
            pending: VecDeque::new(),
            newest_ms: 0,
            last_pushed_ms: [None; 2],
            video_keyframe_seen: false,
            origin_ms: None,
            held: [None, None],
            fragment: None,
            written: Vec::new(),
            sequence: 0,
            clocks: [TrackClock::default(); 2],
            sps,
            pps,
            frames: 0,
        };
        muxer.header_len = muxer.header().len();
        muxer
    }

    /// The first bytes of the file, before any fragment.
    pub fn header(&self) -> Vec<u8> {
        self.build_header(None)
    }

    /// Adds one frame: for video one access unit in Annex B form, for audio one Opus
    /// packet. `at_ms` is its time from the start of the recording, on one clock for
    /// both tracks. Returns one or more complete fragments when some are done.
    ///
    /// Video before the first video keyframe is dropped; with a video track, the file
    /// starts at the first video keyframe (time 0) and earlier audio is dropped. A
    /// timestamp not after the track's previous one is raised to just after it. Frames
    /// of a track the muxer was not given, and empty frames, are ignored.
    ///
    /// Frames wait 500 ms (of `at_ms`) to be put in time order across tracks, and each
    /// track's last frame waits for the next one (which sets its duration), so
    /// fragments come out that much later; `finish` writes the rest.
    pub fn push(
        &mut self,
        track: TrackKind,
        at_ms: u64,
        keyframe: bool,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        let known = match track {
            TrackKind::Video => self.tracks.video.is_some(),
            TrackKind::Audio => self.tracks.audio.is_some(),
        };
        if !known || data.is_empty() {
            return None;
        }
        if track == TrackKind::Video && !self.video_keyframe_seen {
            if !keyframe {
                return None;
            }
            self.video_keyframe_seen = true;
        }
        // Strictly after the track's previous frame: two samples at one time would
        // have a zero duration.
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
            Pending {
                track,
                at_ms,
                keyframe,
                data: data.to_vec(),
            },
        );

        let mut out = Vec::new();
        while self
            .pending
            .front()
            .is_some_and(|p| p.at_ms + REORDER_WINDOW_MS <= self.newest_ms)
        {
            let frame = self.pending.pop_front().expect("front checked");
            self.write(frame, &mut out);
        }
        (!out.is_empty()).then_some(out)
    }

    /// Writes what is still buffered, and returns it with the final header (durations
    /// and the index).
    pub fn finish(mut self) -> Finished {
        let mut tail = Vec::new();
        while let Some(frame) = self.pending.pop_front() {
            self.write(frame, &mut tail);
        }
        for track in [TrackKind::Video, TrackKind::Audio] {
            if let Some(sample) = self.held[track as usize].take() {
                let default_ms = default_frame_ms(track);
                let duration_ms = self.clocks[track as usize].last_duration_ms(default_ms);
                self.append(track, sample, duration_ms);
            }
        }
        self.close_fragment(&mut tail);

        let track_ms = [
            self.clocks[0].end_ms(DEFAULT_VIDEO_FRAME_MS),
            self.clocks[1].end_ms(DEFAULT_AUDIO_FRAME_MS),
        ];
        let duration_ms = track_ms[0].max(track_ms[1]);
        let header = self.build_header(Some(&Totals {
            duration_ms,
            track_ms,
            references: references(&self.written, self.index_room),
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

    fn track_id(&self, track: TrackKind) -> u32 {
        match (track, self.tracks.video.is_some()) {
            (TrackKind::Video, _) | (TrackKind::Audio, false) => 1,
            (TrackKind::Audio, true) => 2,
        }
    }

    /// The track the index (and fragment cutting) follows.
    fn index_track(&self) -> TrackKind {
        if self.tracks.video.is_some() {
            TrackKind::Video
        } else {
            TrackKind::Audio
        }
    }

    /// Takes a frame released from the reorder buffer: completes the held sample of
    /// its track, cuts the fragment if this frame starts a new one, and holds it.
    fn write(&mut self, frame: Pending, out: &mut Vec<u8>) {
        let video_keyframe = frame.track == TrackKind::Video && frame.keyframe;
        let has_video = self.tracks.video.is_some();
        let origin = match self.origin_ms {
            Some(origin) => origin,
            None if has_video && !video_keyframe => return,
            None => *self.origin_ms.insert(frame.at_ms),
        };
        // Audio from before the first keyframe, released late.
        let Some(mut t) = frame.at_ms.checked_sub(origin) else {
            return;
        };
        let data = match frame.track {
            TrackKind::Video => self.avcc_sample(&frame.data, video_keyframe),
            TrackKind::Audio => frame.data,
        };
        if data.is_empty() {
            return;
        }
        let slot = frame.track as usize;
        if let Some(held) = self.held[slot].take() {
            // Per track the reorder buffer keeps order; this only guards the arithmetic.
            t = t.max(held.t + 1);
            let duration_ms = t - held.t;
            self.append(frame.track, held, duration_ms);
        }

        match &self.fragment {
            None => self.open_fragment(t, video_keyframe || !has_video),
            Some(fragment) => {
                let age = t.saturating_sub(fragment.start_ms);
                let cut = if has_video {
                    (video_keyframe && age >= MIN_FRAGMENT_MS) || age >= MAX_FRAGMENT_MS
                } else {
                    age >= AUDIO_ONLY_FRAGMENT_MS
                };
                let bytes: usize = fragment.runs.iter().map(|r| r.data.len()).sum();
                let full = bytes + data.len() > MAX_FRAGMENT_BYTES;
                let empty = fragment.runs.iter().all(|r| r.samples.is_empty());
                if (cut || full) && !empty {
                    self.close_fragment(out);
                    self.open_fragment(t, video_keyframe || !has_video);
                }
            }
        }

        let clock = &mut self.clocks[slot];
        if let Some(last) = clock.last_ms {
            clock.last_gap_ms = t.saturating_sub(last);
        }
        clock.last_ms = Some(t);
        self.held[slot] = Some(Sample {
            t,
            sync: video_keyframe || frame.track == TrackKind::Audio,
            data,
        });
        self.frames += 1;
    }

    fn open_fragment(&mut self, start_ms: u64, sap: bool) {
        self.fragment = Some(OpenFragment {
            start_ms,
            sap,
            runs: Default::default(),
        });
    }

    /// Puts a sample whose duration is now known into the open fragment.
    fn append(&mut self, track: TrackKind, sample: Sample, duration_ms: u64) {
        let fragment = self.fragment.as_mut().expect("a fragment opened before");
        let ticks_per_ms = timescale(track) / MOVIE_TIMESCALE;
        let run = &mut fragment.runs[track as usize];
        if run.samples.is_empty() {
            run.base = sample.t * ticks_per_ms;
        }
        let flags = if sample.sync {
            SYNC_SAMPLE
        } else {
            NON_SYNC_SAMPLE
        };
        run.samples.push((
            (duration_ms * ticks_per_ms) as u32,
            sample.data.len() as u32,
            flags,
        ));
        run.data.extend_from_slice(&sample.data);
    }

    /// An access unit in AVCC form: 4-byte lengths, no delimiters, and the parameter
    /// sets in force in front of a keyframe that came without them.
    fn avcc_sample(&mut self, annex_b: &[u8], keyframe: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(annex_b.len() + 16);
        let mut has_sps = false;
        for nal in nal_units(annex_b) {
            match nal_type(nal) {
                NAL_AUD => continue,
                NAL_SPS => {
                    has_sps = true;
                    self.sps = nal.to_vec();
                }
                NAL_PPS => self.pps = nal.to_vec(),
                _ => {}
            }
            put_nal(&mut out, nal);
        }
        if keyframe && !has_sps && !out.is_empty() {
            let mut with_sets = Vec::with_capacity(out.len() + self.sps.len() + 16);
            put_nal(&mut with_sets, &self.sps);
            put_nal(&mut with_sets, &self.pps);
            with_sets.extend_from_slice(&out);
            out = with_sets;
        }
        out
    }

    fn close_fragment(&mut self, out: &mut Vec<u8>) {
        let Some(fragment) = self.fragment.take() else {
            return;
        };
        if fragment.runs.iter().all(|r| r.samples.is_empty()) {
            return;
        }
        self.sequence += 1;
        let start = out.len();
        let runs: Vec<(TrackKind, &Run)> = [TrackKind::Video, TrackKind::Audio]
            .into_iter()
            .map(|track| (track, &fragment.runs[track as usize]))
            .filter(|(_, run)| !run.samples.is_empty())
            .collect();
        // moof { mfhd, traf { tfhd, tfdt, trun }... }: trun data offsets count from
        // the moof (default-base-is-moof) and point into the mdat after it.
        let moof_len = BOX_HEAD_LEN
            + 16
            + runs
                .iter()
                .map(|(_, run)| BOX_HEAD_LEN + 16 + 20 + 20 + 12 * run.samples.len())
                .sum::<usize>();
        let mut data_at = moof_len + BOX_HEAD_LEN;
        put_box(out, b"moof", |b| {
            put_full_box(b, b"mfhd", 0, 0, |b| put_u32(b, self.sequence));
            for (track, run) in &runs {
                put_box(b, b"traf", |b| {
                    put_full_box(b, b"tfhd", 0, 0x02_0000, |b| {
                        put_u32(b, self.track_id(*track))
                    });
                    put_full_box(b, b"tfdt", 1, 0, |b| put_u64(b, run.base));
                    // data offset, then per sample duration, size and flags.
                    put_full_box(b, b"trun", 0, 0x00_0701, |b| {
                        put_u32(b, run.samples.len() as u32);
                        put_u32(b, data_at as u32);
                        for &(duration, size, flags) in &run.samples {
                            put_u32(b, duration);
                            put_u32(b, size);
                            put_u32(b, flags);
                        }
                    });
                });
                data_at += run.data.len();
            }
        });
        debug_assert_eq!(out.len() - start, moof_len);
        let data_len: usize = fragment.runs.iter().map(|r| r.data.len()).sum();
        put_u32(out, (BOX_HEAD_LEN + data_len) as u32);
        out.extend_from_slice(b"mdat");
        for (_, run) in &runs {
            out.extend_from_slice(&run.data);
        }
        let index_run = &fragment.runs[self.index_track() as usize];
        self.written.push(WrittenFragment {
            size: (out.len() - start) as u64,
            sap: fragment.sap,
            duration: index_run.samples.iter().map(|s| u64::from(s.0)).sum(),
        });
    }

    fn build_header(&self, totals: Option<&Totals>) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024 + self.index_space());
        put_box(&mut out, b"ftyp", |b| {
            b.extend_from_slice(b"iso6");
            put_u32(b, 0);
            // iso6: tfdt and default-base-is-moof; mp41 for older readers.
            for brand in [b"iso6", b"iso5", b"mp41", b"avc1"] {
                b.extend_from_slice(brand);
            }
        });
        let movie_ms = totals.map_or(0, |t| t.duration_ms);
        put_box(&mut out, b"moov", |b| {
            put_full_box(b, b"mvhd", 1, 0, |b| {
                put_u64(b, 0); // creation time
                put_u64(b, 0); // modification time
                put_u32(b, MOVIE_TIMESCALE as u32);
                put_u64(b, movie_ms);
                put_u32(b, 0x0001_0000); // rate 1.0
                b.extend_from_slice(&0x0100u16.to_be_bytes()); // volume 1.0
                b.extend_from_slice(&[0; 10]);
                put_matrix(b);
                b.extend_from_slice(&[0; 24]);
                put_u32(b, 3); // next track ID
            });
            for track in [TrackKind::Video, TrackKind::Audio] {
                let present = match track {
                    TrackKind::Video => self.tracks.video.is_some(),
                    TrackKind::Audio => self.tracks.audio.is_some(),
                };
                if present {
                    let track_ms = totals.map_or(0, |t| t.track_ms[track as usize]);
                    self.put_trak(b, track, track_ms);
                }
            }
            put_box(b, b"mvex", |b| {
                put_full_box(b, b"mehd", 1, 0, |b| put_u64(b, movie_ms));
                for track in [TrackKind::Video, TrackKind::Audio] {
                    let present = match track {
                        TrackKind::Video => self.tracks.video.is_some(),
                        TrackKind::Audio => self.tracks.audio.is_some(),
                    };
                    if present {
                        put_full_box(b, b"trex", 0, 0, |b| {
                            put_u32(b, self.track_id(track));
                            put_u32(b, 1); // sample description index
                            put_u32(b, 0); // default duration
                            put_u32(b, 0); // default size
                            put_u32(b, NON_SYNC_SAMPLE);
                        });
                    }
                }
            });
        });

        let mut space = self.index_space();
        if let Some(totals) = totals.filter(|t| !t.references.is_empty()) {
            let sidx_start = out.len();
            let rest = space - SIDX_HEAD_LEN - SIDX_REFERENCE_LEN * totals.references.len();
            let index_track = self.index_track();
            put_full_box(&mut out, b"sidx", 1, 0, |b| {
                put_u32(b, self.track_id(index_track));
                put_u32(b, timescale(index_track) as u32);
                put_u64(b, 0); // earliest presentation time: the file starts at 0
                put_u64(b, rest as u64); // first offset: past the free box
                b.extend_from_slice(&[0, 0]);
                b.extend_from_slice(&(totals.references.len() as u16).to_be_bytes());
                for reference in &totals.references {
                    put_u32(b, reference.size as u32); // reference_type 0: media
                    put_u32(b, reference.duration as u32);
                    // starts_with_SAP, SAP type 1, SAP delta 0
                    put_u32(b, if reference.sap { 0x9000_0000 } else { 0 });
                }
            });
            space -= out.len() - sidx_start;
        }
        put_u32(&mut out, space as u32);
        out.extend_from_slice(b"free");
        out.resize(out.len() + space - BOX_HEAD_LEN, 0);
        out
    }

    /// The `free` box that the index is written into: a full `sidx` leaves at least
    /// an empty `free` behind.
    fn index_space(&self) -> usize {
        SIDX_HEAD_LEN + SIDX_REFERENCE_LEN * self.index_room + BOX_HEAD_LEN
    }

    fn put_trak(&self, b: &mut Vec<u8>, track: TrackKind, track_ms: u64) {
        let id = self.track_id(track);
        put_box(b, b"trak", |b| {
            // enabled, in movie
            put_full_box(b, b"tkhd", 1, 3, |b| {
                put_u64(b, 0);
                put_u64(b, 0);
                put_u32(b, id);
                put_u32(b, 0);
                put_u64(b, track_ms);
                b.extend_from_slice(&[0; 8]);
                b.extend_from_slice(&[0; 4]); // layer, alternate group
                let volume: u16 = if track == TrackKind::Audio { 0x0100 } else { 0 };
                b.extend_from_slice(&volume.to_be_bytes());
                b.extend_from_slice(&[0; 2]);
                put_matrix(b);
                let (width, height) = match (&self.tracks.video, track) {
                    (Some(video), TrackKind::Video) => (video.width(), video.height()),
                    _ => (0, 0),
                };
                put_u32(b, width << 16); // 16.16 fixed point
                put_u32(b, height << 16);
            });
            put_box(b, b"mdia", |b| {
                put_full_box(b, b"mdhd", 1, 0, |b| {
                    put_u64(b, 0);
                    put_u64(b, 0);
                    put_u32(b, timescale(track) as u32);
                    put_u64(b, track_ms * (timescale(track) / MOVIE_TIMESCALE));
                    b.extend_from_slice(&0x55C4u16.to_be_bytes()); // "und"
                    b.extend_from_slice(&[0; 2]);
                });
                let (handler, name): (&[u8; 4], &[u8]) = match track {
                    TrackKind::Video => (b"vide", b"VideoHandler\0"),
                    TrackKind::Audio => (b"soun", b"SoundHandler\0"),
                };
                put_full_box(b, b"hdlr", 0, 0, |b| {
                    put_u32(b, 0);
                    b.extend_from_slice(handler);
                    b.extend_from_slice(&[0; 12]);
                    b.extend_from_slice(name);
                });
                put_box(b, b"minf", |b| {
                    match track {
                        TrackKind::Video => put_full_box(b, b"vmhd", 0, 1, |b| {
                            b.extend_from_slice(&[0; 8]);
                        }),
                        TrackKind::Audio => put_full_box(b, b"smhd", 0, 0, |b| {
                            b.extend_from_slice(&[0; 4]);
                        }),
                    }
                    put_box(b, b"dinf", |b| {
                        put_full_box(b, b"dref", 0, 0, |b| {
                            put_u32(b, 1);
                            // The media is in this file.
                            put_full_box(b, b"url ", 0, 1, |_| {});
                        });
                    });
                    put_box(b, b"stbl", |b| {
                        put_full_box(b, b"stsd", 0, 0, |b| {
                            put_u32(b, 1);
                            match track {
                                TrackKind::Video => self.put_avc3(b),
                                TrackKind::Audio => self.put_opus(b),
                            }
                        });
                        // The samples are all in fragments.
                        put_full_box(b, b"stts", 0, 0, |b| put_u32(b, 0));
                        put_full_box(b, b"stsc", 0, 0, |b| put_u32(b, 0));
                        put_full_box(b, b"stsz", 0, 0, |b| put_u64(b, 0));
                        put_full_box(b, b"stco", 0, 0, |b| put_u32(b, 0));
                    });
                });
            });
        });
    }

    fn put_avc3(&self, b: &mut Vec<u8>) {
        let Some(video) = &self.tracks.video else {
            return;
        };
        put_box(b, b"avc3", |b| {
            b.extend_from_slice(&[0; 6]);
            b.extend_from_slice(&1u16.to_be_bytes()); // data reference index
            b.extend_from_slice(&[0; 16]);
            b.extend_from_slice(&(video.width() as u16).to_be_bytes());
            b.extend_from_slice(&(video.height() as u16).to_be_bytes());
            put_u32(b, 0x0048_0000); // 72 dpi
            put_u32(b, 0x0048_0000);
            put_u32(b, 0);
            b.extend_from_slice(&1u16.to_be_bytes()); // frame count
            b.extend_from_slice(&[0; 32]); // compressor name
            b.extend_from_slice(&0x0018u16.to_be_bytes()); // depth
            b.extend_from_slice(&(-1i16).to_be_bytes());
            put_box(b, b"avcC", |b| {
                b.push(1); // configuration version
                b.extend_from_slice(&video.sps[1..4]); // profile, constraints, level
                b.push(0xFF); // 4-byte NAL lengths
                b.push(0xE1); // one SPS
                b.extend_from_slice(&(video.sps.len() as u16).to_be_bytes());
                b.extend_from_slice(&video.sps);
                b.push(1); // one PPS
                b.extend_from_slice(&(video.pps.len() as u16).to_be_bytes());
                b.extend_from_slice(&video.pps);
                let info = &video.info;
                if info.high_profile {
                    b.push(0xFC | info.chroma_format_idc as u8);
                    b.push(0xF8 | info.bit_depth_luma_minus8 as u8);
                    b.push(0xF8 | info.bit_depth_chroma_minus8 as u8);
                    b.push(0); // no SPS extensions
                }
            });
        });
    }

    fn put_opus(&self, b: &mut Vec<u8>) {
        let Some(audio) = &self.tracks.audio else {
            return;
        };
        put_box(b, b"Opus", |b| {
            b.extend_from_slice(&[0; 6]);
            b.extend_from_slice(&1u16.to_be_bytes()); // data reference index
            b.extend_from_slice(&[0; 8]);
            b.extend_from_slice(&u16::from(audio.channels).to_be_bytes());
            b.extend_from_slice(&16u16.to_be_bytes()); // sample size
            b.extend_from_slice(&[0; 4]);
            put_u32(b, (AUDIO_TIMESCALE as u32) << 16);
            // Opus in ISO BMFF, section 4.3.2 (big-endian, unlike OpusHead).
            put_box(b, b"dOps", |b| {
                b.push(0); // version
                b.push(audio.channels);
                b.extend_from_slice(&0u16.to_be_bytes()); // pre-skip: see the module doc
                put_u32(b, audio.sample_rate);
                b.extend_from_slice(&0i16.to_be_bytes()); // output gain
                b.push(0); // channel mapping family
            });
        });
    }
}

fn timescale(track: TrackKind) -> u64 {
    match track {
        TrackKind::Video => VIDEO_TIMESCALE,
        TrackKind::Audio => AUDIO_TIMESCALE,
    }
}

fn default_frame_ms(track: TrackKind) -> u64 {
    match track {
        TrackKind::Video => DEFAULT_VIDEO_FRAME_MS,
        TrackKind::Audio => DEFAULT_AUDIO_FRAME_MS,
    }
}

/// The index references for the fragments written: a fragment that does not start
/// with a keyframe joins the one before (a seek into it has to start there anyway),
/// and when more remain than `room`, runs of them are merged, each still starting
/// with a keyframe.
fn references(fragments: &[WrittenFragment], room: usize) -> Vec<Reference> {
    // referenced_size has 31 bits, subsegment_duration 32.
    const MAX_SIZE: u64 = (1 << 31) - 1;
    const MAX_DURATION: u64 = u32::MAX as u64;
    let mut per_reference = fragments.len().div_ceil(room.max(1)).max(1);
    loop {
        let mut out: Vec<(Reference, usize)> = Vec::new();
        for fragment in fragments {
            match out.last_mut() {
                Some((last, count))
                    if (!fragment.sap || *count < per_reference)
                        && last.size + fragment.size <= MAX_SIZE
                        && last.duration + fragment.duration <= MAX_DURATION =>
                {
                    last.size += fragment.size;
                    last.duration += fragment.duration;
                    *count += 1;
                }
                _ => out.push((
                    Reference {
                        size: fragment.size,
                        duration: fragment.duration,
                        sap: fragment.sap,
                    },
                    1,
                )),
            }
        }
        if out.len() <= room || per_reference >= fragments.len() {
            let mut out: Vec<Reference> = out.into_iter().map(|(r, _)| r).collect();
            // Only the size and duration limits can leave too many: drop the index
            // rather than write a wrong one.
            if out.len() > room {
                out.clear();
            }
            return out;
        }
        per_reference += 1;
    }
}

// ---- H.264 bitstream ---------------------------------------------------------------

/// The NAL units of an Annex B access unit, without start codes (or the whole input
/// as one NAL unit when it has none).
fn nal_units(annex_b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let starts = start_codes(annex_b);
    let whole = starts.is_empty().then_some(annex_b);
    let ends: Vec<usize> = starts
        .iter()
        .skip(1)
        .map(|&(code_at, _)| code_at)
        .chain([annex_b.len()])
        .collect();
    starts
        .into_iter()
        .zip(ends)
        .map(move |((_, data_at), end)| {
            let nal = &annex_b[data_at..end];
            // trailing_zero_8bits, and the first zero of a 4-byte start code
            let len = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            &nal[..len]
        })
        .chain(whole)
        .filter(|nal| !nal.is_empty())
}

/// (where a 00 00 01 start code begins, where its NAL unit begins)
fn start_codes(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            out.push((i, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    out
}

fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1F)
}

fn put_nal(out: &mut Vec<u8>, nal: &[u8]) {
    put_u32(out, nal.len() as u32);
    out.extend_from_slice(nal);
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct SpsInfo {
    width: u32,
    height: u32,
    /// Profiles that code chroma format and bit depth (and so extend `avcC`).
    high_profile: bool,
    chroma_format_idc: u32,
    bit_depth_luma_minus8: u32,
    bit_depth_chroma_minus8: u32,
}

/// The fields of a sequence parameter set (H.264 7.3.2.1.1) up to the cropping,
/// which give the picture size.
fn parse_sps(nal: &[u8]) -> Option<SpsInfo> {
    if nal_type(nal) != NAL_SPS || nal.len() < 4 {
        return None;
    }
    let rbsp = unescape(&nal[1..]);
    let mut bits = Bits {
        data: &rbsp,
        position: 24, // profile_idc, constraint flags, level_idc
    };
    let profile_idc = rbsp[0];
    bits.ue()?; // seq_parameter_set_id
    let high_profile = matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    );
    let mut info = SpsInfo {
        width: 0,
        height: 0,
        high_profile,
        chroma_format_idc: 1,
        bit_depth_luma_minus8: 0,
        bit_depth_chroma_minus8: 0,
    };
    let mut separate_colour_plane = false;
    if high_profile {
        info.chroma_format_idc = bits.ue()?;
        if info.chroma_format_idc == 3 {
            separate_colour_plane = bits.read(1)? == 1;
        }
        info.bit_depth_luma_minus8 = bits.ue()?;
        info.bit_depth_chroma_minus8 = bits.ue()?;
        bits.read(1)?; // qpprime_y_zero_transform_bypass_flag
        if bits.read(1)? == 1 {
            // seq_scaling_matrix_present_flag
            let lists = if info.chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if bits.read(1)? == 1 {
                    bits.skip_scaling_list(if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    bits.ue()?; // log2_max_frame_num_minus4
    match bits.ue()? {
        0 => {
            bits.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            bits.read(1)?; // delta_pic_order_always_zero_flag
            bits.se()?; // offset_for_non_ref_pic
            bits.se()?; // offset_for_top_to_bottom_field
            for _ in 0..bits.ue()? {
                bits.se()?; // offset_for_ref_frame
            }
        }
        _ => {}
    }
    bits.ue()?; // max_num_ref_frames
    bits.read(1)?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = bits.ue()? + 1;
    let height_map_units = bits.ue()? + 1;
    let frame_mbs_only = bits.read(1)?;
    if frame_mbs_only == 0 {
        bits.read(1)?; // mb_adaptive_frame_field_flag
    }
    bits.read(1)?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0, 0, 0, 0);
    if bits.read(1)? == 1 {
        (left, right, top, bottom) = (bits.ue()?, bits.ue()?, bits.ue()?, bits.ue()?);
    }
    let frame_height_mbs = (2 - frame_mbs_only) * height_map_units;
    // Table 6-1 and equations 7-19 to 7-22.
    let (crop_x, crop_y) = match (separate_colour_plane, info.chroma_format_idc) {
        (true, _) | (_, 0) => (1, 2 - frame_mbs_only),
        (false, 1) => (2, 2 * (2 - frame_mbs_only)),
        (false, 2) => (2, 2 - frame_mbs_only),
        (false, _) => (1, 2 - frame_mbs_only),
    };
    info.width = (width_mbs * 16).checked_sub(crop_x * (left + right))?;
    info.height = (frame_height_mbs * 16).checked_sub(crop_y * (top + bottom))?;
    (info.width > 0 && info.height > 0).then_some(info)
}

/// The RBSP of a NAL unit: emulation prevention bytes (00 00 03) removed.
fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &byte in data {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
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

    /// Unsigned exp-Golomb.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.read(1)? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some(((1u64 << zeros) - 1 + u64::from(self.read(zeros)?)) as u32)
    }

    /// Signed exp-Golomb.
    fn se(&mut self) -> Option<i32> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) } as i32)
    }

    fn skip_scaling_list(&mut self, size: usize) -> Option<()> {
        let (mut last, mut next) = (8i32, 8i32);
        for _ in 0..size {
            if next != 0 {
                next = (last + self.se()? + 256) % 256;
            }
            if next != 0 {
                last = next;
            }
        }
        Some(())
    }
}

// ---- box writing -------------------------------------------------------------------

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_box(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    body(&mut inner);
    put_u32(out, (BOX_HEAD_LEN + inner.len()) as u32);
    out.extend_from_slice(kind);
    out.extend_from_slice(&inner);
}

fn put_full_box(
    out: &mut Vec<u8>,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    put_box(out, kind, |b| {
        put_u32(b, (u32::from(version) << 24) | flags);
        body(b);
    });
}

/// The identity transformation matrix of `mvhd` and `tkhd`.
fn put_matrix(out: &mut Vec<u8>) {
    for value in [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000u32] {
        put_u32(out, value);
    }
}
