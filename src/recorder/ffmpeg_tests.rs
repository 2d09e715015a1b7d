//! Test tools the muxers' tests share: frames to push, running FFmpeg's
//! programs (which `scripts/setup` installs), a scratch directory, and
//! reading ffprobe.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use super::frames::Frame;
use super::webm::TrackKind;

/// An Opus packet's worth of audio at `at_ms`.
pub fn audio(at_ms: u64) -> Frame {
    Frame {
        track: TrackKind::Audio,
        at_ms,
        keyframe: false,
        data: vec![0xfc; 60],
    }
}

/// `count` frames, one every `every_ms`, starting at `from_ms`.
pub fn times(from_ms: u64, every_ms: u64, count: u64) -> impl Iterator<Item = u64> {
    (0..count).map(move |i| from_ms + i * every_ms)
}

/// Frames in the order the caller would see them: by time, audio `audio_lag_ms`
/// behind video.
pub fn arrival_order(mut frames: Vec<Frame>, audio_lag_ms: u64) -> Vec<Frame> {
    frames.sort_by_key(|f| {
        f.at_ms
            + if f.track == TrackKind::Audio {
                audio_lag_ms
            } else {
                0
            }
    });
    frames
}

pub fn run(program: &str, args: &[&str]) -> Output {
    match Command::new(program).args(args).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{program} not found: run scripts/setup (it installs ffmpeg)")
        }
        Err(e) => panic!("could not run {program}: {e}"),
    }
}

pub fn run_ok(program: &str, args: &[&str]) -> Output {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Removed at the end unless the test failed, to leave the files to look at.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "stagepass-rec-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, file: &str) -> String {
        self.0.join(file).to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `ffprobe -of flat`: `streams.stream.0.codec_name="h264"` -> key, value.
pub fn probe(path: &str) -> HashMap<String, String> {
    let output = run_ok(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-show_format",
            "-of",
            "flat",
            path,
        ],
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

pub fn number(probe: &HashMap<String, String>, key: &str) -> f64 {
    probe
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("ffprobe gave no number for {key}: {probe:#?}"))
}

pub fn assert_near(what: &str, value: f64, expected: f64) {
    let tolerance = expected * 0.1;
    assert!(
        (value - expected).abs() <= tolerance,
        "{what}: {value}, expected {expected} ± 10 %"
    );
}

/// Decoding the whole file prints nothing: no corrupt frame, no bad timestamp.
pub fn assert_decodes_cleanly(path: &str, seek_to: Option<&str>) {
    let mut args = vec!["-v", "error"];
    if let Some(seconds) = seek_to {
        args.extend(["-ss", seconds]);
    }
    args.extend(["-i", path, "-f", "null", "-"]);
    let output = run_ok("ffmpeg", &args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.trim().is_empty(),
        "ffmpeg {args:?} complained: {stderr}"
    );
}
