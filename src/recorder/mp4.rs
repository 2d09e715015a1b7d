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
//! (a simulcast layer switch, a screen share), and `avc1` wants every parameter set in
//! the sample entry, which cannot change once `moov` is written. Keyframes that come without SPS/PPS get the latest ones put in front,
//! so every keyframe a seek lands on decodes on its own. Samples are in AVCC form
//! (4-byte lengths); access unit delimiters are dropped. Timestamps come from RTP,
//! which has no composition offsets: B-frames (never sent over WebRTC) are not
//! supported. Both tracks run at 48 kHz (see `VIDEO_TIMESCALE`). A sample lasts until
//! the next one of its track, so each track is held back by one sample, and the last
//! one lasts as long as the gap before it (as in webm.rs); decode times therefore run
//! on without gaps, and each `tfdt` equals the previous fragment's end.
//!
//! Opus: `Opus` sample entry with `dOps` (the Opus-in-ISOBMFF mapping), pre-skip 0
//! for the reason webm.rs gives: the recording joins a running encoder and RTP
//! timestamps already date each packet's first sample.
//!
//! Boxes are written by hand, like webm.rs, and no crate is added: the thirty-odd
//! boxes of this subset are little more code than the glue to a box crate
//! (`mp4-atom`), and the in-place patch depends on every field keeping its width,
//! which is easiest to guarantee when each width is written here. The SPS parser the
//! track size needs is a hundred lines; `h264-reader` would bring its NAL push-parser
//! machinery for that one function.

use super::frames::Muxer as _;
use super::frames::{DEFAULT_AUDIO_FRAME_MS, DEFAULT_VIDEO_FRAME_MS, Frame, Reorder, TrackClock};

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

// Fragments are cut as `frames::cut` says, as webm.rs cuts clusters.

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
/// The audio's, rather than the usual 90 kHz: FFmpeg before 6.1 seeks a track the
/// `sidx` does not index (the audio) by comparing its target with the indexed
/// track's times without converting timescales, and lands seconds early.
const VIDEO_TIMESCALE: u64 = AUDIO_TIMESCALE;
/// Opus in ISO BMFF always runs at 48 kHz.
const AUDIO_TIMESCALE: u64 = 48_000;

// trun/trex sample flags (ISO 14496-12 8.8.3.1).
const SYNC_SAMPLE: u32 = 0x0200_0000; // depends on no other sample
const NON_SYNC_SAMPLE: u32 = 0x0101_0000; // depends on others, is_non_sync_sample

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// Takes (through `frames::Muxer::push`) for video one access unit in Annex B
/// form, for audio one Opus packet. Each track's last frame waits for the next
/// one, which sets its duration.
pub struct Muxer {
    tracks: Tracks,
    header_len: usize,
    /// References the reserved index space holds.
    index_room: usize,
    /// Frames waiting for the reorder window.
    order: Reorder,
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
        let order = Reorder::new(tracks.video.is_some(), tracks.audio.is_some());
        let mut muxer = Muxer {
            tracks,
            header_len: 0,
            index_room,
            order,
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

    /// Writes what is still buffered, and returns it with the final header (durations
    /// and the index).
    pub fn finish(mut self) -> Finished {
        let mut tail = Vec::new();
        for frame in self.order.drain() {
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

impl super::frames::Muxer for Muxer {
    fn reorder(&mut self) -> &mut Reorder {
        &mut self.order
    }

    /// Takes a frame released from the reorder buffer: completes the held sample of
    /// its track, cuts the fragment if this frame starts a new one, and holds it.
    fn write(&mut self, frame: Frame, out: &mut Vec<u8>) {
        let video_keyframe = frame.track == TrackKind::Video && frame.keyframe;
        let has_video = self.tracks.video.is_some();
        let Some(mut t) = super::frames::file_time(&mut self.origin_ms, has_video, &frame) else {
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
                let bytes: usize = fragment.runs.iter().map(|r| r.data.len()).sum();
                let cut = super::frames::cut(has_video, video_keyframe, age, bytes, data.len());
                let empty = fragment.runs.iter().all(|r| r.samples.is_empty());
                if cut && !empty {
                    self.close_fragment(out);
                    self.open_fragment(t, video_keyframe || !has_video);
                }
            }
        }

        self.clocks[slot].tick(t);
        self.held[slot] = Some(Sample {
            t,
            sync: video_keyframe || frame.track == TrackKind::Audio,
            data,
        });
        self.frames += 1;
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
    let mut per_reference = 1;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::ffmpeg_tests::*;

    // ---- a small box reader, to check what the muxer wrote -----------------------

    #[derive(Clone, Copy, Debug)]
    struct Atom {
        kind: [u8; 4],
        start: usize,
        body: usize,
        end: usize,
    }

    impl Atom {
        fn is(&self, kind: &[u8; 4]) -> bool {
            &self.kind == kind
        }
    }

    fn atoms(b: &[u8], from: usize, to: usize) -> Vec<Atom> {
        let mut out = Vec::new();
        let mut pos = from;
        while pos < to {
            assert!(pos + 8 <= to, "box header at {pos} overruns {to}");
            let size = u32::from_be_bytes(b[pos..pos + 4].try_into().unwrap()) as usize;
            assert!(size >= 8 && pos + size <= to, "box at {pos}: size {size}");
            out.push(Atom {
                kind: b[pos + 4..pos + 8].try_into().unwrap(),
                start: pos,
                body: pos + 8,
                end: pos + size,
            });
            pos += size;
        }
        out
    }

    fn children(b: &[u8], parent: &Atom) -> Vec<Atom> {
        atoms(b, parent.body, parent.end)
    }

    fn find(b: &[u8], parent: &Atom, path: &[&[u8; 4]]) -> Atom {
        let mut atom = *parent;
        for kind in path {
            atom = *children(b, &atom)
                .iter()
                .find(|a| a.is(kind))
                .unwrap_or_else(|| panic!("no {}", String::from_utf8_lossy(*kind)));
        }
        atom
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[derive(Debug)]
    struct Parsed {
        top: Vec<Atom>,
        /// (size, duration, starts with SAP)
        sidx: Vec<(u64, u64, bool)>,
        sidx_timescale: u32,
        /// Where the first reference starts.
        sidx_first: usize,
        movie_ms: u64,
        mehd_ms: u64,
        /// tkhd (track ID, width, height, duration ms), mdhd (timescale, duration)
        tracks: Vec<ParsedTrack>,
        fragments: Vec<Fragment>,
    }

    #[derive(Debug)]
    struct ParsedTrack {
        id: u32,
        entry: [u8; 4],
        width: u32,
        height: u32,
        duration_ms: u64,
        timescale: u32,
        media_duration: u64,
        config: Vec<u8>,
    }

    #[derive(Debug)]
    struct Fragment {
        start: usize,
        size: usize,
        sequence: u32,
        runs: Vec<ParsedRun>,
    }

    #[derive(Debug)]
    struct ParsedRun {
        track: u32,
        base: u64,
        /// (duration, flags, data)
        samples: Vec<(u32, u32, Vec<u8>)>,
    }

    fn parse(b: &[u8]) -> Parsed {
        let top = atoms(b, 0, b.len());
        let kinds: Vec<&[u8; 4]> = top.iter().map(|a| &a.kind).collect();
        assert_eq!(kinds[0], b"ftyp");
        assert_eq!(kinds[1], b"moov");
        let moov = top[1];
        let mvhd = find(b, &moov, &[b"mvhd"]);
        assert_eq!(b[mvhd.body], 1, "mvhd version 1");
        assert_eq!(u32_at(b, mvhd.body + 20), 1000);
        let mehd = find(b, &moov, &[b"mvex", b"mehd"]);
        let mut parsed = Parsed {
            top: top.clone(),
            sidx: Vec::new(),
            sidx_timescale: 0,
            sidx_first: 0,
            movie_ms: u64_at(b, mvhd.body + 24),
            mehd_ms: u64_at(b, mehd.body + 4),
            tracks: Vec::new(),
            fragments: Vec::new(),
        };
        for trak in children(b, &moov).iter().filter(|a| a.is(b"trak")) {
            let tkhd = find(b, trak, &[b"tkhd"]);
            let mdhd = find(b, trak, &[b"mdia", b"mdhd"]);
            let stsd = find(b, trak, &[b"mdia", b"minf", b"stbl", b"stsd"]);
            let entry = atoms(b, stsd.body + 8, stsd.end)[0];
            let config = *children(
                b,
                &Atom {
                    body: entry.body + if entry.is(b"Opus") { 28 } else { 78 },
                    ..entry
                },
            )
            .first()
            .expect("codec configuration box");
            parsed.tracks.push(ParsedTrack {
                id: u32_at(b, tkhd.body + 20),
                entry: entry.kind,
                width: u32_at(b, tkhd.end - 8) >> 16,
                height: u32_at(b, tkhd.end - 4) >> 16,
                duration_ms: u64_at(b, tkhd.body + 28),
                timescale: u32_at(b, mdhd.body + 20),
                media_duration: u64_at(b, mdhd.body + 24),
                config: b[config.start..config.end].to_vec(),
            });
        }
        for (i, atom) in top.iter().enumerate() {
            match &atom.kind {
                b"sidx" => {
                    let at = atom.body;
                    parsed.sidx_timescale = u32_at(b, at + 8);
                    let first_offset = u64_at(b, at + 20) as usize;
                    parsed.sidx_first = atom.end + first_offset;
                    let count = u16::from_be_bytes([b[at + 30], b[at + 31]]) as usize;
                    assert_eq!(atom.end - atom.start, 40 + 12 * count);
                    for r in 0..count {
                        let at = at + 32 + 12 * r;
                        let size = u32_at(b, at);
                        assert_eq!(size >> 31, 0, "references media");
                        parsed.sidx.push((
                            u64::from(size),
                            u64::from(u32_at(b, at + 4)),
                            u32_at(b, at + 8) >> 31 == 1,
                        ));
                    }
                }
                b"moof" => {
                    let mdat = top[i + 1];
                    assert!(mdat.is(b"mdat"));
                    let mfhd = find(b, atom, &[b"mfhd"]);
                    let mut fragment = Fragment {
                        start: atom.start,
                        size: mdat.end - atom.start,
                        sequence: u32_at(b, mfhd.body + 4),
                        runs: Vec::new(),
                    };
                    for traf in children(b, atom).iter().filter(|a| a.is(b"traf")) {
                        let tfhd = find(b, traf, &[b"tfhd"]);
                        assert_eq!(u32_at(b, tfhd.body) & 0x02_0000, 0x02_0000);
                        let tfdt = find(b, traf, &[b"tfdt"]);
                        assert_eq!(b[tfdt.body], 1);
                        let trun = find(b, traf, &[b"trun"]);
                        assert_eq!(u32_at(b, trun.body), 0x701);
                        let count = u32_at(b, trun.body + 4) as usize;
                        let mut data = atom.start + u32_at(b, trun.body + 8) as usize;
                        let mut samples = Vec::new();
                        for s in 0..count {
                            let at = trun.body + 12 + 12 * s;
                            let size = u32_at(b, at + 4) as usize;
                            assert!(data >= mdat.body && data + size <= mdat.end);
                            samples.push((
                                u32_at(b, at),
                                u32_at(b, at + 8),
                                b[data..data + size].to_vec(),
                            ));
                            data += size;
                        }
                        fragment.runs.push(ParsedRun {
                            track: u32_at(b, tfhd.body + 4),
                            base: u64_at(b, tfdt.body + 4),
                            samples,
                        });
                    }
                    parsed.fragments.push(fragment);
                }
                b"ftyp" | b"moov" | b"free" | b"mdat" => {}
                other => panic!("unexpected box {}", String::from_utf8_lossy(other)),
            }
        }
        parsed
    }

    impl Parsed {
        fn runs(&self, track: u32) -> impl Iterator<Item = &ParsedRun> {
            self.fragments
                .iter()
                .flat_map(|f| &f.runs)
                .filter(move |r| r.track == track)
        }

        fn samples(&self, track: u32) -> usize {
            self.runs(track).map(|r| r.samples.len()).sum()
        }

        /// Start of each fragment in the index track's ms.
        fn fragment_times(&self) -> Vec<u64> {
            self.fragments
                .iter()
                .map(|f| {
                    let run = &f.runs[0];
                    run.base / 48
                })
                .collect()
        }

        /// What every file we write must satisfy.
        fn assert_well_formed(&self) {
            for (i, f) in self.fragments.iter().enumerate() {
                assert_eq!(f.sequence as usize, i + 1);
            }
            // Each track's decode times run on without gaps or overlaps.
            for track in &self.tracks {
                let mut next = None;
                for run in self.runs(track.id) {
                    if let Some(next) = next {
                        assert_eq!(run.base, next, "track {} jumps", track.id);
                    }
                    assert!(run.samples.iter().all(|s| s.0 > 0), "zero duration");
                    next = Some(run.base + run.samples.iter().map(|s| u64::from(s.0)).sum::<u64>());
                }
            }
            // The index covers every fragment, each reference starting at a keyframe.
            if !self.sidx.is_empty() {
                assert_eq!(self.sidx_first, self.fragments[0].start);
                let total: u64 = self.sidx.iter().map(|r| r.0).sum();
                let fragments: usize = self.fragments.iter().map(|f| f.size).sum();
                assert_eq!(total as usize, fragments);
                let mut at = self.sidx_first;
                for &(size, _, sap) in &self.sidx {
                    let fragment = self
                        .fragments
                        .iter()
                        .find(|f| f.start == at)
                        .expect("a reference starts at a fragment");
                    assert!(sap);
                    assert_eq!(fragment.runs[0].samples[0].1, SYNC_SAMPLE);
                    at += size as usize;
                }
            }
        }
    }

    // ---- synthetic frames -------------------------------------------------------

    /// x264's SPS and PPS for 640x360 baseline (360 is 23 macroblocks, cropped).
    const SPS_640X360: &[u8] = &[
        0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
        0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48,
    ];
    const PPS: &[u8] = &[0x68, 0xcb, 0x83, 0xcb, 0x20];

    fn annex_b(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for nal in nals {
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(nal);
        }
        out
    }

    fn access_unit(keyframe: bool, len: usize) -> Vec<u8> {
        let mut slice = vec![0x5a; len.max(2)];
        slice[0] = if keyframe { 0x65 } else { 0x41 };
        if keyframe {
            annex_b(&[&[0x09, 0x10], SPS_640X360, PPS, &slice])
        } else {
            annex_b(&[&[0x09, 0x30], &slice])
        }
    }

    fn video_track() -> VideoTrack {
        VideoTrack::from_keyframe(&access_unit(true, 10)).expect("SPS and PPS")
    }

    fn audio_track() -> AudioTrack {
        AudioTrack {
            channels: 2,
            sample_rate: 48_000,
        }
    }

    fn video_and_audio() -> Tracks {
        Tracks {
            video: Some(video_track()),
            audio: Some(audio_track()),
        }
    }

    fn video(at_ms: u64, keyframe: bool) -> Frame {
        Frame {
            track: TrackKind::Video,
            at_ms,
            keyframe,
            data: access_unit(keyframe, 200),
        }
    }

    struct Muxed {
        header_len: usize,
        /// As uploaded before `finish` patched the header.
        unpatched: Vec<u8>,
        /// The header and the chunks `push` returned: a recording cut short.
        cut_short: Vec<u8>,
        file: Vec<u8>,
        finished: Finished,
    }

    fn mux_into(mut muxer: Muxer, frames: &[Frame]) -> Muxed {
        let mut unpatched = muxer.header();
        let header_len = unpatched.len();
        for f in frames {
            if let Some(chunk) = muxer.push(f.track, f.at_ms, f.keyframe, &f.data) {
                unpatched.extend_from_slice(&chunk);
            }
        }
        let cut_short = unpatched.clone();
        let finished = muxer.finish();
        unpatched.extend_from_slice(&finished.tail);
        assert_eq!(finished.header.len(), header_len);
        let mut file = finished.header.clone();
        file.extend_from_slice(&unpatched[header_len..]);
        Muxed {
            header_len,
            unpatched,
            cut_short,
            file,
            finished,
        }
    }

    fn mux(tracks: Tracks, frames: &[Frame]) -> Muxed {
        mux_into(Muxer::new(tracks), frames)
    }

    #[test]
    fn sps_gives_the_cropped_size() {
        let track = video_track();
        assert_eq!((track.width(), track.height()), (640, 360));
        assert!(!track.info.high_profile);
        assert!(VideoTrack::from_keyframe(&access_unit(false, 10)).is_none());
        assert!(VideoTrack::from_keyframe(&annex_b(&[SPS_640X360])).is_none());
        assert!(h264_is_keyframe(&access_unit(true, 10)));
        assert!(!h264_is_keyframe(&access_unit(false, 10)));
        // 3-byte start codes, and emulation prevention inside the SPS.
        let short: Vec<u8> = [&[0, 0, 1][..], SPS_640X360, &[0, 0, 1], PPS].concat();
        assert_eq!(VideoTrack::from_keyframe(&short).unwrap().height(), 360);
    }

    #[test]
    fn finished_file_has_seekable_layout() {
        let mut frames: Vec<Frame> = times(0, 33, 300).map(|t| video(t, t % 1980 == 0)).collect();
        frames.extend(times(0, 20, 500).map(audio));
        let muxed = mux(video_and_audio(), &arrival_order(frames, 40));

        // Only the header changes, and it keeps its length.
        assert_eq!(muxed.file.len(), muxed.unpatched.len());
        assert_eq!(
            muxed.file[muxed.header_len..],
            muxed.unpatched[muxed.header_len..]
        );

        let parsed = parse(&muxed.file);
        parsed.assert_well_formed();
        let kinds: Vec<&[u8; 4]> = parsed.top.iter().take(4).map(|a| &a.kind).collect();
        assert_eq!(kinds, [b"ftyp", b"moov", b"sidx", b"free"]);
        assert_eq!(parsed.movie_ms, 10_000); // last audio packet 9980 + 20
        assert_eq!(parsed.mehd_ms, 10_000);
        assert_eq!(muxed.finished.duration_ms, 10_000);
        assert_eq!(muxed.finished.frames, 800);
        assert_eq!(muxed.finished.started_at_ms, Some(0));

        let (v, a) = (&parsed.tracks[0], &parsed.tracks[1]);
        assert_eq!((v.id, &v.entry, v.width, v.height), (1, b"avc3", 640, 360));
        assert_eq!((v.timescale, v.duration_ms), (48_000, 9_867 + 33));
        assert_eq!(v.media_duration, 9_900 * 48);
        assert_eq!(&v.config[4..8], b"avcC");
        assert_eq!(&v.config[8..12], &[1, 0x42, 0xc0, 0x1e]);
        assert_eq!((a.id, &a.entry, a.timescale), (2, b"Opus", 48_000));
        assert_eq!(a.duration_ms, 10_000);
        assert_eq!(&a.config[4..8], b"dOps");
        assert_eq!(a.config.len(), 8 + 11);

        // A fragment per keyframe (every 1980 ms), each indexed.
        assert_eq!(parsed.fragment_times(), [0, 1980, 3960, 5940, 7920]);
        assert_eq!(parsed.sidx.len(), 5);
        assert_eq!(parsed.sidx_timescale, 48_000);
        assert_eq!(parsed.sidx[0].1, 1980 * 48);
        assert_eq!(parsed.samples(1), 300);
        assert_eq!(parsed.samples(2), 500);
        let first = &parsed.fragments[0].runs[0].samples[0];
        assert_eq!(first.1, SYNC_SAMPLE);
        // AVCC: the delimiter gone, SPS, PPS and the IDR slice with 4-byte lengths.
        assert_eq!(
            first.2[..4 + SPS_640X360.len()],
            [&(SPS_640X360.len() as u32).to_be_bytes()[..], SPS_640X360].concat()
        );
        assert_eq!(first.2.len(), 3 * 4 + SPS_640X360.len() + PPS.len() + 200);
        let second = &parsed.fragments[0].runs[0].samples[1];
        assert_eq!(
            (second.0, second.1, second.2.len()),
            (33 * 48, NON_SYNC_SAMPLE, 204)
        );
        assert!(
            parsed
                .runs(2)
                .flat_map(|r| &r.samples)
                .all(|s| s.1 == SYNC_SAMPLE && s.0 == 960)
        );

        // Cut short before `finish`, the upload still reads: no index, no durations.
        let live = parse(&muxed.unpatched);
        live.assert_well_formed();
        assert!(live.sidx.is_empty());
        assert_eq!((live.movie_ms, live.tracks[0].duration_ms), (0, 0));
        assert_eq!(live.samples(1) + live.samples(2), 800);
        assert!(parse(&muxed.cut_short).fragments.len() >= 3);
    }

    #[test]
    fn recording_starts_at_first_video_keyframe() {
        let mut frames: Vec<Frame> = times(0, 33, 10).map(|t| video(t, false)).collect();
        frames.extend(times(330, 33, 60).map(|t| video(t, t == 330)));
        frames.extend(times(0, 20, 100).map(audio));
        let muxed = mux(video_and_audio(), &arrival_order(frames, 0));
        let parsed = parse(&muxed.file);
        parsed.assert_well_formed();
        assert_eq!(muxed.finished.started_at_ms, Some(330));
        assert_eq!(parsed.samples(1), 60);
        // Audio from 340 ms on: 83 packets; the 17 before the keyframe are dropped.
        assert_eq!(parsed.samples(2), 83);
        assert_eq!(parsed.runs(2).next().unwrap().base, 10 * 48);
    }

    #[test]
    fn nothing_is_written_without_a_keyframe() {
        let mut frames: Vec<Frame> = times(0, 33, 100).map(|t| video(t, false)).collect();
        frames.extend(times(0, 20, 100).map(audio));
        let muxed = mux(video_and_audio(), &arrival_order(frames, 0));
        assert!(muxed.finished.tail.is_empty());
        assert_eq!(muxed.file.len(), muxed.header_len);
        assert_eq!((muxed.finished.frames, muxed.finished.duration_ms), (0, 0));
        let parsed = parse(&muxed.file);
        assert!(parsed.fragments.is_empty() && parsed.sidx.is_empty());
    }

    #[test]
    fn fragments_wait_a_second_for_the_next_keyframe() {
        let frames: Vec<Frame> = times(0, 100, 50).map(|t| video(t, t % 500 == 0)).collect();
        let parsed = parse(&mux(video_and_audio(), &frames).file);
        parsed.assert_well_formed();
        assert_eq!(parsed.fragment_times(), [0, 1000, 2000, 3000, 4000]);
    }

    #[test]
    fn fragments_without_keyframes_end_after_five_seconds() {
        let mut frames: Vec<Frame> = times(0, 100, 120).map(|t| video(t, t == 0)).collect();
        frames.extend(times(60_000, 100, 5).map(|t| video(t, false)));
        let muxed = mux(video_and_audio(), &frames);
        let parsed = parse(&muxed.file);
        parsed.assert_well_formed();
        assert_eq!(parsed.fragment_times(), [0, 5000, 10_000, 60_000]);
        // The fragments without a keyframe are part of the first reference.
        assert_eq!(parsed.sidx.len(), 1);
        assert_eq!(parsed.sidx[0].1, 60_500 * 48);
        assert_eq!(muxed.finished.duration_ms, 60_500);
    }

    #[test]
    fn fragments_stay_under_four_mebibytes() {
        let frames: Vec<Frame> = times(0, 100, 10)
            .map(|t| Frame {
                data: access_unit(t == 0, 1_500_000),
                ..video(t, t == 0)
            })
            .collect();
        let parsed = parse(&mux(video_and_audio(), &frames).file);
        parsed.assert_well_formed();
        assert_eq!(parsed.fragment_times(), [0, 200, 400, 600, 800]);
        assert!(
            parsed
                .fragments
                .iter()
                .all(|f| f.size <= crate::recorder::frames::MAX_PIECE_BYTES + 4096)
        );
    }

    #[test]
    fn audio_only_fragments_every_two_seconds() {
        let tracks = Tracks {
            video: None,
            audio: Some(audio_track()),
        };
        let frames: Vec<Frame> = times(5_000, 20, 350).map(audio).collect();
        let muxed = mux(tracks, &frames);
        let parsed = parse(&muxed.file);
        parsed.assert_well_formed();
        assert_eq!(parsed.tracks.len(), 1);
        assert_eq!((parsed.tracks[0].id, &parsed.tracks[0].entry), (1, b"Opus"));
        assert_eq!(parsed.fragment_times(), [0, 2000, 4000, 6000]);
        assert_eq!(parsed.sidx.len(), 4);
        assert_eq!(parsed.sidx_timescale, 48_000);
        assert_eq!(muxed.finished.duration_ms, 7_000);
        assert_eq!(muxed.finished.started_at_ms, Some(5_000));
    }

    #[test]
    fn jitter_and_time_going_backwards_are_absorbed() {
        let mut frames: Vec<Frame> = times(0, 33, 120).map(|t| video(t, t % 990 == 0)).collect();
        frames[60].at_ms -= 50;
        frames[61].at_ms -= 50;
        // Audio arrives 800 ms behind video: later than the reorder window.
        frames.extend(times(0, 20, 200).map(audio));
        let muxed = mux(video_and_audio(), &arrival_order(frames, 800));
        let parsed = parse(&muxed.file);
        parsed.assert_well_formed();
        assert_eq!(parsed.samples(1), 120);
        assert_eq!(parsed.samples(2), 200);
    }

    #[test]
    fn keyframes_without_parameter_sets_get_them() {
        let mut frames: Vec<Frame> = times(0, 100, 30).map(|t| video(t, t % 1000 == 0)).collect();
        for frame in frames.iter_mut().filter(|f| f.keyframe && f.at_ms > 0) {
            frame.data = annex_b(&[&[0x65; 50]]);
        }
        let parsed = parse(&mux(video_and_audio(), &frames).file);
        for run in parsed.runs(1).skip(1) {
            let key = &run.samples[0].2;
            assert_eq!(&key[4..4 + SPS_640X360.len()], SPS_640X360);
            assert_eq!(key.len(), 3 * 4 + SPS_640X360.len() + PPS.len() + 50);
        }
    }

    #[test]
    fn index_merges_references_when_out_of_room() {
        let fragment = |sap| WrittenFragment {
            size: 100,
            duration: 10,
            sap,
        };
        let fragments: Vec<WrittenFragment> =
            [true, false, true, true, false, false, true, true, true]
                .into_iter()
                .map(fragment)
                .collect();
        let sizes = |room| {
            references(&fragments, room)
                .iter()
                .inspect(|r| assert!(r.sap))
                .map(|r| r.size / 100)
                .collect::<Vec<_>>()
        };
        assert_eq!(sizes(INDEX_ROOM), [2, 1, 3, 1, 1, 1]);
        assert_eq!(sizes(6), [2, 1, 3, 1, 1, 1]);
        assert_eq!(sizes(5), [2, 4, 2, 1]);
        assert_eq!(sizes(3), [3, 3, 3]);
        assert_eq!(sizes(2), [6, 3]);
        assert_eq!(sizes(1), [9]);
    }

    #[test]
    fn six_hours_fit_the_index_and_longer_recordings_merge() {
        // One keyframe a second, two frames a second: a fragment a second.
        let fragments = INDEX_ROOM as u64 + 100;
        let frames: Vec<Frame> = times(0, 500, 2 * fragments)
            .map(|t| Frame {
                data: access_unit(t % 1000 == 0, 20),
                ..video(t, t % 1000 == 0)
            })
            .collect();
        let muxed = mux(
            Tracks {
                video: Some(video_track()),
                audio: None,
            },
            &frames,
        );
        let parsed = parse(&muxed.file);
        assert_eq!(parsed.fragments.len() as u64, fragments);
        parsed.assert_well_formed();
        assert!(parsed.sidx.len() <= INDEX_ROOM && parsed.sidx.len() > INDEX_ROOM / 2);
        let total: u64 = parsed.sidx.iter().map(|r| r.1).sum();
        assert_eq!(total, fragments * 1000 * 48);
        assert_eq!(
            parsed.top[3].end - parsed.top[3].start,
            8 + 12 * (INDEX_ROOM - parsed.sidx.len())
        );
    }

    // ---- real frames, checked by FFmpeg -----------------------------------------

    /// A test pattern as raw H.264 (Annex B, 30 fps, a keyframe a second with its
    /// SPS and PPS, an access unit delimiter before each frame, as WebRTC senders
    /// do) and a 48 kHz stereo Opus stream in Ogg.
    fn encode(dir: &TempDir, name: &str, size: &str, profile: &str, seconds: u32) -> Vec<Frame> {
        let (h264, ogg) = (
            dir.path(&format!("{name}.h264")),
            dir.path(&format!("{name}.ogg")),
        );
        let video = format!("testsrc=size={size}:rate=30");
        let seconds = seconds.to_string();
        run_ok(
            "ffmpeg",
            &[
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                &video,
                "-t",
                &seconds,
                "-pix_fmt",
                "yuv420p",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-profile:v",
                profile,
                "-bf",
                "0",
                "-g",
                "30",
                "-x264-params",
                "aud=1:repeat-headers=1",
                "-f",
                "h264",
                &h264,
            ],
        );
        run_ok(
            "ffmpeg",
            &[
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                &seconds,
                "-c:a",
                "libopus",
                "-ac",
                "2",
                "-f",
                "ogg",
                &ogg,
            ],
        );
        let mut frames: Vec<Frame> = access_units(&std::fs::read(&h264).unwrap())
            .into_iter()
            .enumerate()
            .map(|(i, data)| Frame {
                track: TrackKind::Video,
                at_ms: (i as u64 * 1000).div_ceil(30),
                keyframe: h264_is_keyframe(&data),
                data,
            })
            .collect();
        frames.extend(
            ogg_packets(&std::fs::read(&ogg).unwrap())
                .into_iter()
                .enumerate()
                .map(|(i, data)| Frame {
                    track: TrackKind::Audio,
                    at_ms: i as u64 * 20,
                    keyframe: false,
                    data,
                }),
        );
        frames
    }

    /// An Annex B stream cut before each access unit delimiter.
    fn access_units(stream: &[u8]) -> Vec<Vec<u8>> {
        let starts: Vec<usize> = start_codes(stream)
            .into_iter()
            .filter(|&(_, nal)| stream.get(nal).is_some_and(|b| b & 0x1F == NAL_AUD))
            .map(|(code, _)| {
                if code > 0 && stream[code - 1] == 0 {
                    code - 1
                } else {
                    code
                }
            })
            .collect();
        assert!(!starts.is_empty(), "no access unit delimiters");
        let ends = starts.iter().skip(1).copied().chain([stream.len()]);
        starts
            .iter()
            .zip(ends)
            .map(|(&a, b)| stream[a..b].to_vec())
            .collect()
    }

    /// The audio packets of an Ogg Opus stream (the two header packets skipped).
    fn ogg_packets(ogg: &[u8]) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        let mut packet = Vec::new();
        let mut pos = 0;
        while pos < ogg.len() {
            assert_eq!(&ogg[pos..pos + 4], b"OggS");
            let segments = ogg[pos + 26] as usize;
            let lacing = &ogg[pos + 27..pos + 27 + segments];
            let mut data = pos + 27 + segments;
            for &len in lacing {
                packet.extend_from_slice(&ogg[data..data + len as usize]);
                data += len as usize;
                if len < 255 {
                    packets.push(std::mem::take(&mut packet));
                }
            }
            pos = data;
        }
        assert_eq!(&packets[0][..8], b"OpusHead");
        packets.split_off(2)
    }

    fn shifted(frames: Vec<Frame>, by_ms: u64) -> Vec<Frame> {
        frames
            .into_iter()
            .map(|f| Frame {
                at_ms: f.at_ms + by_ms,
                ..f
            })
            .collect()
    }

    fn tracks_for(frames: &[Frame]) -> Tracks {
        let key = frames
            .iter()
            .find(|f| f.keyframe && f.track == TrackKind::Video)
            .unwrap();
        Tracks {
            video: Some(VideoTrack::from_keyframe(&key.data).expect("SPS and PPS")),
            audio: Some(audio_track()),
        }
    }

    /// The first video frame FFmpeg shows after seeking to `seconds`.
    fn frame_after_seek(path: &str, seconds: &str) -> String {
        let interval = format!("{seconds}%+#1");
        let output = run_ok(
            "ffprobe",
            &[
                "-v",
                "error",
                "-read_intervals",
                &interval,
                "-select_streams",
                "v",
                "-show_entries",
                "frame=pts_time,key_frame,width",
                "-of",
                "flat",
                path,
            ],
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// How many `moof` boxes FFmpeg parses to open the file and show one frame at
    /// `seconds` (its trace log names each box it reads).
    fn moofs_read_to_seek(path: &str, seconds: &str) -> usize {
        let interval = format!("{seconds}%+#1");
        let output = run_ok(
            "ffprobe",
            &[
                "-v",
                "trace",
                "-read_intervals",
                &interval,
                "-select_streams",
                "v",
                "-show_entries",
                "frame=pts_time",
                "-of",
                "flat",
                path,
            ],
        );
        String::from_utf8_lossy(&output.stderr)
            .matches("type:'moof'")
            .count()
    }

    fn write(dir: &TempDir, name: &str, bytes: &[u8]) -> String {
        let path = dir.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn real_h264_and_opus_play_and_seek() {
        let dir = TempDir::new("real");
        // As if the recording had been going for 1.2 s when the first keyframe came,
        // with audio delivered 30 ms after video.
        let frames = arrival_order(
            shifted(encode(&dir, "source", "640x360", "baseline", 10), 1_200),
            30,
        );
        let tracks = tracks_for(&frames);
        assert_eq!(
            (
                tracks.video.as_ref().unwrap().width(),
                tracks.video.as_ref().unwrap().height()
            ),
            (640, 360)
        );
        let muxed = mux(tracks, &frames);
        let parsed = parse(&muxed.file);
        parsed.assert_well_formed();
        assert_eq!(parsed.fragments.len(), 10, "a fragment per keyframe second");
        let file = write(&dir, "out.mp4", &muxed.file);
        let live = write(&dir, "live.mp4", &muxed.unpatched);
        let cut = write(&dir, "cut.mp4", &muxed.cut_short);

        let p = probe(&file);
        eprintln!(
            "h264: ffprobe {}x{}, {} video frames, {} audio frames, {} s",
            p["streams.stream.0.width"],
            p["streams.stream.0.height"],
            p["streams.stream.0.nb_read_frames"],
            p["streams.stream.1.nb_read_frames"],
            p["format.duration"],
        );
        assert_eq!(p["streams.stream.0.codec_name"], "h264");
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
            300.0,
        );
        assert_near("duration", number(&p, "format.duration"), 10.0);
        assert_eq!(p["streams.stream.1.codec_name"], "opus");
        assert_eq!(p["streams.stream.1.channels"], "2");
        assert_near(
            "audio frames",
            number(&p, "streams.stream.1.nb_read_frames"),
            500.0,
        );

        assert_decodes_cleanly(&file, None);
        assert_decodes_cleanly(&file, Some("5"));
        let shown = frame_after_seek(&file, "5");
        assert!(
            shown.contains("pts_time=\"5.000000\"") && shown.contains("key_frame=1"),
            "{shown}"
        );
        // FFmpeg finds the fragment through the sidx; without it (the file as it
        // was before the patch) it reads every moof before it can seek.
        let (indexed, walked) = (
            moofs_read_to_seek(&file, "8"),
            moofs_read_to_seek(&live, "8"),
        );
        eprintln!("moofs read to seek to 8 s: {indexed} with the index, {walked} without");
        assert!(indexed <= 3 && walked >= 10, "{indexed} / {walked}");

        // The upload as it stood before the header was patched still plays, and so
        // does one cut short before `finish`, as far as it got.
        let p = probe(&live);
        assert_near(
            "frames of the unpatched file",
            number(&p, "streams.stream.0.nb_read_frames"),
            300.0,
        );
        let got = parse(&muxed.cut_short).samples(1);
        assert!(got >= 200, "{got} frames before the tail");
        let p = probe(&cut);
        assert_eq!(number(&p, "streams.stream.0.nb_read_frames") as usize, got);
        assert_decodes_cleanly(&cut, None);
    }

    #[test]
    fn real_resolution_switch_decodes_cleanly() {
        let dir = TempDir::new("switch");
        let mut frames = encode(&dir, "camera", "640x360", "baseline", 2);
        let screen = shifted(encode(&dir, "screen", "1280x720", "high", 2), 2_000);
        let first = screen.iter().find(|f| f.track == TrackKind::Video).unwrap();
        let high = VideoTrack::from_keyframe(&first.data).unwrap();
        assert_eq!(
            (high.width(), high.height(), high.info.high_profile),
            (1280, 720, true)
        );
        frames.extend(screen);
        let frames = arrival_order(frames, 0);
        let muxed = mux(tracks_for(&frames), &frames);
        let parsed = parse(&muxed.file);
        parsed.assert_well_formed();
        assert_eq!(
            (parsed.tracks[0].width, parsed.tracks[0].height),
            (640, 360)
        );
        let file = write(&dir, "out.mp4", &muxed.file);

        assert_decodes_cleanly(&file, None);
        let p = probe(&file);
        assert_near(
            "video frames",
            number(&p, "streams.stream.0.nb_read_frames"),
            120.0,
        );
        assert_near("duration", number(&p, "format.duration"), 4.0);
        assert!(frame_after_seek(&file, "1").contains("width=640"));
        let shown = frame_after_seek(&file, "3");
        assert!(shown.contains("width=1280"), "{shown}");
        assert_decodes_cleanly(&file, Some("3"));
    }

    #[test]
    fn real_file_with_merged_index_seeks() {
        let dir = TempDir::new("merged");
        let frames = arrival_order(encode(&dir, "source", "640x360", "baseline", 10), 0);
        let muxed = mux_into(Muxer::with_index_room(tracks_for(&frames), 3), &frames);
        let parsed = parse(&muxed.file);
        parsed.assert_well_formed();
        assert_eq!(parsed.fragments.len(), 10);
        assert_eq!(parsed.sidx.len(), 3);
        let file = write(&dir, "out.mp4", &muxed.file);
        let p = probe(&file);
        assert_near(
            "video frames",
            number(&p, "streams.stream.0.nb_read_frames"),
            300.0,
        );
        assert_near("duration", number(&p, "format.duration"), 10.0);
        assert_decodes_cleanly(&file, None);
        assert_decodes_cleanly(&file, Some("5"));
        let shown = frame_after_seek(&file, "5");
        assert!(shown.contains("key_frame=1"), "{shown}");
    }
}
