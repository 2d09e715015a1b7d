//! A real WHIP client, as OBS 30+ is one: Chromium (fake camera and
//! microphone) on a small page served here by the harness, which offers its
//! SDP to livekit-server's `/whip/v1` with the stream key as its bearer token,
//! applies the answer, and later ends the session with a DELETE of the
//! resource (what OBS's "Stop Streaming" does).

use std::time::Duration;

use serde_json::Value;
use tokio::sync::OnceCell;

use super::browser::Browser;

/// The encoder page: `publish(url, key, codec)` answers `{status, error?}`
/// (`codec`: a video MIME type to send only, as OBS sends H.264, or null);
/// `stop()` ends the session; `window.pc` is the peer connection.
const PAGE: &str = r#"<!doctype html>
<html lang="en"><meta charset="utf-8"><title>WHIP encoder (test)</title>
<body><video id="preview" autoplay muted playsinline></video>
<script>
window.pc = null;
let resource = null;
let bearer = null;

async function publish(url, key, codec) {
  const media = await navigator.mediaDevices.getUserMedia({
    video: { width: 640, height: 360, frameRate: 30 },
    audio: true,
  });
  document.getElementById("preview").srcObject = media;
  const pc = new RTCPeerConnection();
  window.pc = pc;
  for (const track of media.getTracks()) {
    const t = pc.addTransceiver(track, { direction: "sendonly" });
    if (codec && track.kind === "video") {
      const all = RTCRtpSender.getCapabilities("video").codecs;
      t.setCodecPreferences(all.filter((c) => c.mimeType === codec));
    }
  }
  await pc.setLocalDescription(await pc.createOffer());
  // No trickle (OBS does not trickle either): the offer carries the candidates.
  await new Promise((done) => {
    if (pc.iceGatheringState === "complete") return done();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && done());
    setTimeout(done, 3000);
  });
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${key}` },
    body: pc.localDescription.sdp,
  });
  const body = await response.text();
  if (response.status !== 201) {
    pc.close();
    return { status: response.status, error: body };
  }
  resource = new URL(response.headers.get("Location"), url).href;
  bearer = key;
  await pc.setRemoteDescription({ type: "answer", sdp: body });
  return { status: response.status };
}

async function stop() {
  if (resource) {
    await fetch(resource, { method: "DELETE", headers: { Authorization: `Bearer ${bearer}` } });
  }
  window.pc?.close();
  resource = null;
}
</script>
</body></html>
"#;

/// The page's URL: served once per run from a loopback port (a secure
/// context, so getUserMedia works).
async fn page_url() -> &'static str {
    static URL: OnceCell<String> = OnceCell::const_new();
    URL.get_or_init(|| async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Its own thread and runtime: the page outlives any one test's runtime.
        let listener = listener.into_std().unwrap();
        std::thread::Builder::new()
            .name("whip-page".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let app = axum::Router::new().route(
                        "/encoder.html",
                        axum::routing::get(|| async { axum::response::Html(PAGE) }),
                    );
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    axum::serve(listener, app).await.unwrap();
                });
            })
            .unwrap();
        format!("http://127.0.0.1:{port}/encoder.html")
    })
    .await
}

/// The owner's WHIP stream key from the studio page (created if there is
/// none): the server URL and the key, as OBS gets them.
pub async fn whip_key(owner: &super::Browser, stream: stagepass::db::StreamId) -> (String, String) {
    let studio = format!("/studio/streams/{stream}");
    if owner.get(&studio).await.has("#ingress-create-form") {
        let created = owner
            .submit(&studio, "#ingress-create-form", &[("kind", "whip")])
            .await;
        assert_eq!(
            created.status,
            reqwest::StatusCode::SEE_OTHER,
            "{}",
            created.text
        );
    }
    let page = owner.get(&studio).await;
    (page.text_of("#ingress-url"), page.text_of("#ingress-key"))
}

/// One encoder (one Chromium); it can publish, stop and publish again.
pub struct Encoder {
    browser: Browser,
}

impl Encoder {
    pub async fn start() -> Encoder {
        let browser = Browser::start().await;
        browser.goto(page_url().await).await;
        browser.wait_for("#preview").await;
        Encoder { browser }
    }

    /// Offers to `whip_url` with `key` as the bearer token; answers
    /// LiveKit's HTTP status (201: the session exists).
    pub async fn publish(&self, whip_url: &str, key: &str) -> u16 {
        self.publish_as(whip_url, key, None).await
    }

    /// As `publish`, sending video only in `codec` (a MIME type such as
    /// `video/H264`, what OBS sends).
    pub async fn publish_as(&self, whip_url: &str, key: &str, codec: Option<&str>) -> u16 {
        let script = format!(
            "return publish({}, {}, {});",
            Value::from(whip_url),
            Value::from(key),
            codec.map_or(Value::Null, Value::from)
        );
        let answer = self.browser.js(&script).await;
        answer["status"]
            .as_u64()
            .unwrap_or_else(|| panic!("publish answered {answer}")) as u16
    }

    /// Waits until the peer connection to LiveKit is up (media flowing).
    pub async fn wait_connected(&self) {
        self.browser
            .wait_until(
                "the encoder's peer connection to connect",
                "return window.pc && window.pc.connectionState === 'connected'",
                Duration::from_secs(30),
            )
            .await;
    }

    /// How many video frames the encoder has sent so far (WebRTC stats).
    pub async fn frames_sent(&self) -> u64 {
        let script = "return window.pc.getStats().then((stats) => { let n = 0; \
             stats.forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === 'video') n += s.framesSent || 0; }); \
             return n; })";
        self.browser.js(script).await.as_u64().unwrap_or(0)
    }

    /// Ends the session as OBS's "Stop Streaming" does (WHIP DELETE).
    pub async fn stop(&self) {
        self.browser.js("return stop().then(() => true)").await;
    }

    pub async fn close(self) {
        self.browser.close().await;
    }
}
