//! The load clients of `make bench`, driven by `bench/bench.py`. Each prints one
//! JSON object on stdout (progress goes to stderr).
//!
//! - `fanout`: N signed-in viewers hold the chat's SSE stream open; one more
//!   viewer posts messages; every subscriber timestamps each message as it
//!   arrives. Delivery latency = arrival - the moment the post was sent. Also
//!   reads the app's RSS (from /proc) before connecting and with everyone
//!   connected, for the memory per subscriber.
//! - `storm`: distinct viewers each ask for a LiveKit token once, on a fresh
//!   connection, at times spread evenly over a window (a stream starting and
//!   its audience clicking "watch").
//!
//! One HTTP/1.1 connection per viewer, built with hyper's low-level client so
//! that nothing is pooled or shared behind our back; the fan-out's subscribers
//! read their event streams straight off their sockets (`subscribe`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, COOKIE, HOST};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};

const SESSION_COOKIE: &str = "stagepass_session";

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        usage();
    };
    let flags = Flags::parse(rest);
    let result = match command.as_str() {
        "fanout" => fanout(&flags).await,
        "storm" => storm(&flags).await,
        "idle" => idle(&flags).await,
        _ => usage(),
    };
    match result {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("stagepass-bench {command}: {e}");
            std::process::exit(1);
        }
    }
}

fn usage() -> ! {
    eprintln!(
        "usage:\n  stagepass-bench fanout --addr HOST:PORT --stream ID --sessions FILE --n N \\\n      \
         --sender 'COOKIE CSRF' --messages M --interval-ms MS --app-pid PID --tag TAG [--wait-ms MS]\n  \
         stagepass-bench storm --addr HOST:PORT --stream ID --sessions FILE --n N --within-ms MS\n  \
         stagepass-bench idle --addr HOST:PORT --n N --app-pid PID\n\
         SESSIONS: one viewer a line, `COOKIE CSRF` (session cookie value, its CSRF token)"
    );
    std::process::exit(2);
}

struct Flags(HashMap<String, String>);

impl Flags {
    fn parse(args: &[String]) -> Flags {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(name) = it.next() {
            let Some(name) = name.strip_prefix("--") else {
                usage()
            };
            let Some(value) = it.next() else { usage() };
            map.insert(name.to_owned(), value.clone());
        }
        Flags(map)
    }

    fn get(&self, name: &str) -> String {
        self.0.get(name).cloned().unwrap_or_else(|| {
            eprintln!("missing --{name}");
            usage()
        })
    }

    fn num_or<T: std::str::FromStr>(&self, name: &str, default: T) -> T {
        if self.0.contains_key(name) {
            self.num(name)
        } else {
            default
        }
    }

    fn num<T: std::str::FromStr>(&self, name: &str) -> T {
        self.get(name).parse().unwrap_or_else(|_| {
            eprintln!("--{name} must be a number");
            usage()
        })
    }
}

#[derive(Clone)]
struct Viewer {
    cookie: String,
    csrf: String,
}

fn read_sessions(path: &str, n: usize) -> Result<Vec<Viewer>, Error> {
    let text = std::fs::read_to_string(path)?;
    let viewers: Vec<Viewer> = text
        .lines()
        .filter_map(|line| {
            let (cookie, csrf) = line.trim().split_once(' ')?;
            Some(Viewer {
                cookie: cookie.to_owned(),
                csrf: csrf.to_owned(),
            })
        })
        .take(n)
        .collect();
    if viewers.len() < n {
        return Err(format!("{path} has {} sessions, {n} needed", viewers.len()).into());
    }
    Ok(viewers)
}

/// Opens a fresh HTTP/1.1 connection.
async fn connect(
    addr: &str,
) -> Result<
    hyper::client::conn::http1::SendRequest<
        http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>,
    >,
    Error,
> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn empty() -> http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible> {
    Empty::<Bytes>::new().boxed()
}

/// Resident set size of a process, in KiB (VmRSS of /proc/PID/status).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn summary(mut ms: Vec<f64>) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    json!({
        "count": ms.len(),
        "p50_ms": percentile(&ms, 0.50),
        "p90_ms": percentile(&ms, 0.90),
        "p99_ms": percentile(&ms, 0.99),
        "max_ms": ms.last(),
    })
}

// ---- fanout -----------------------------------------------------------------------

/// What one subscriber saw: (message number, arrival).
type Arrivals = Vec<(usize, Instant)>;

async fn fanout(flags: &Flags) -> Result<serde_json::Value, Error> {
    let addr = flags.get("addr");
    let stream: u64 = flags.num("stream");
    let n: usize = flags.num("n");
    let messages: usize = flags.num("messages");
    let interval = Duration::from_millis(flags.num("interval-ms"));
    let app_pid: u32 = flags.num("app-pid");
    let tag = flags.get("tag");
    let viewers = read_sessions(&flags.get("sessions"), n)?;
    let sender = flags.get("sender");
    let (sender_cookie, sender_csrf) = sender.split_once(' ').ok_or("--sender is `COOKIE CSRF`")?;

    let rss_before = rss_kib(app_pid);
    let path = format!("/s/{stream}/chat/events");
    let marker = format!("bench-{tag}-");

    // Connect everyone, at most 256 handshakes in flight (a crowd arriving,
    // not a SYN flood), and wait until all are subscribed or have failed.
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(256));
    let connected = Arc::new(AtomicUsize::new(0));
    let (done_tx, _) = watch::channel(false);
    let (fail_tx, mut fail_rx) = mpsc::unbounded_channel::<String>();
    let mut tasks = Vec::with_capacity(n);
    for viewer in viewers {
        let (addr, path, marker) = (addr.clone(), path.clone(), marker.clone());
        let (gate, connected, fail_tx) = (gate.clone(), connected.clone(), fail_tx.clone());
        let mut done = done_tx.subscribe();
        tasks.push(tokio::spawn(async move {
            let mut arrivals = Arrivals::new();
            let permit = gate.acquire_owned().await.expect("the gate stays open");
            let (tcp, after_head) = match subscribe(&addr, &path, &viewer).await {
                Ok(opened) => opened,
                Err(e) => {
                    let _ = fail_tx.send(e.to_string());
                    return arrivals;
                }
            };
            drop(permit);
            connected.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                r = read_events(tcp, after_head, marker.as_bytes(), &mut arrivals) => {
                    if let Err(e) = r {
                        let _ = fail_tx.send(format!("stream ended: {e}"));
                    }
                }
                _ = done.wait_for(|d| *d) => {}
            }
            arrivals
        }));
    }
    drop(fail_tx);

    let mut failures: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last_report = Instant::now();
    loop {
        while let Ok(f) = fail_rx.try_recv() {
            failures.push(f);
        }
        let up = connected.load(Ordering::Relaxed);
        if up + failures.len() >= n || Instant::now() > deadline {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("    {up}/{n} subscribers connected");
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    let subscribed = connected.load(Ordering::Relaxed);
    // Let the server settle (subscriber tasks finish their first database
    // reads) before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_connected = rss_kib(app_pid);
    // Optionally wait before posting, e.g. so that the subscribers' periodic
    // access re-checks fall within the messages.
    tokio::time::sleep(Duration::from_millis(flags.num_or("wait-ms", 0))).await;

    // The sender: one viewer posting through the chat form, as htmx does.
    let mut sent: Vec<Option<Instant>> = Vec::with_capacity(messages);
    let mut post_ms = Vec::with_capacity(messages);
    let mut post_statuses = Vec::with_capacity(messages);
    let mut post = connect(&addr).await?;
    for k in 0..messages {
        let tick = Instant::now();
        let form = format!("body={marker}{k}-hello+everyone");
        let req = Request::post(format!("/s/{stream}/chat"))
            .header(HOST, &addr)
            .header(COOKIE, format!("{SESSION_COOKIE}={sender_cookie}"))
            .header("x-csrf-token", sender_csrf)
            .header("hx-request", "true")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)).boxed())?;
        if post.ready().await.is_err() {
            post = connect(&addr).await?;
        }
        let t0 = Instant::now();
        let resp = post.send_request(req).await?;
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        post_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        post_statuses.push(status);
        sent.push((status == 200).then_some(t0));
        if k + 1 < messages {
            tokio::time::sleep(interval.saturating_sub(tick.elapsed())).await;
        }
    }
    // Stragglers get three seconds; later than that counts as not delivered.
    let expected = subscribed * sent.iter().flatten().count();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = done_tx.send(true);

    let mut latencies = Vec::with_capacity(expected);
    let mut delivered = vec![0usize; messages];
    for task in tasks {
        for (k, at) in task.await? {
            if let Some(Some(t0)) = sent.get(k) {
                latencies.push(at.saturating_duration_since(*t0).as_secs_f64() * 1e3);
                delivered[k] += 1;
            }
        }
    }
    while let Ok(f) = fail_rx.try_recv() {
        failures.push(f);
    }
    let rss_per_subscriber = match (rss_before, rss_connected) {
        (Some(b), Some(c)) if subscribed > 0 => {
            Some((c as f64 - b as f64) * 1024.0 / subscribed as f64)
        }
        _ => None,
    };
    let mut distinct_failures: Vec<String> = failures.iter().take(5).cloned().collect();
    distinct_failures.dedup();
    Ok(json!({
        "n": n,
        "subscribed": subscribed,
        "connect_seconds": connect_seconds,
        "failures": failures.len(),
        "failure_examples": distinct_failures,
        "rss_before_kib": rss_before,
        "rss_connected_kib": rss_connected,
        "rss_per_subscriber_bytes": rss_per_subscriber,
        "messages": messages,
        "post_statuses": post_statuses,
        "post": summary(post_ms),
        "expected_deliveries": expected,
        "delivered": delivered.iter().sum::<usize>(),
        "delivered_per_message": delivered,
        "latency": summary(latencies),
    }))
}

/// Opens the chat's event stream on a connection of its own: the request
/// written and the response read straight off the socket, in the
/// subscriber's one task. (Through hyper's client each subscriber had a
/// connection task and a channel to its reader as well, so every message woke
/// two tasks in the load client, on the cores it shares with the app.)
/// Answers the socket and whatever came after the response's head.
async fn subscribe(addr: &str, path: &str, viewer: &Viewer) -> Result<(TcpStream, Vec<u8>), Error> {
    let mut tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {SESSION_COOKIE}={}\r\n\
         Accept: text/event-stream\r\n\r\n",
        viewer.cookie
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(1024);
    loop {
        if tcp.read_buf(&mut head).await? == 0 {
            return Err(format!("GET {path}: closed before the response").into());
        }
        if let Some(end) = find(&head, b"\r\n\r\n") {
            let status_line = head.split(|b| *b == b'\r').next().unwrap_or_default();
            if !status_line.starts_with(b"HTTP/1.1 200 ") {
                return Err(format!("GET {path}: {}", String::from_utf8_lossy(status_line)).into());
            }
            let rest = head.split_off(end + 4);
            return Ok((tcp, rest));
        }
        if head.len() > 16 * 1024 {
            return Err(format!("GET {path}: the response's head is over 16 KiB").into());
        }
    }
}

/// Reads the event stream, noting when each of our messages (`marker` + its
/// number) arrives. Returns when the server closes the connection. (Chunked
/// framing is not decoded: the app sends each event as one chunk, and Caddy
/// passes whole events on, so a chunk header never falls inside a marker; a
/// message it did split would count as not delivered, never as delivered.)
async fn read_events(
    mut tcp: TcpStream,
    mut carry: Vec<u8>,
    marker: &[u8],
    arrivals: &mut Arrivals,
) -> Result<(), Error> {
    // `carry` keeps the tail of the previous read, in case a marker straddles two.
    let mut now = Instant::now();
    loop {
        let mut from = 0;
        while let Some(at) = find(&carry[from..], marker) {
            let digits_at = from + at + marker.len();
            let digits = carry[digits_at..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            // A number cut off at the end of the read: wait for the rest.
            if digits_at + digits == carry.len() {
                break;
            }
            if let Ok(k) = std::str::from_utf8(&carry[digits_at..digits_at + digits])
                .unwrap_or("")
                .parse::<usize>()
                && !arrivals.iter().any(|(seen, _)| *seen == k)
            {
                arrivals.push((k, now));
            }
            from = digits_at + digits;
        }
        let keep = marker.len() + 20;
        if carry.len() > keep {
            carry.drain(..carry.len() - keep);
        }
        carry.reserve(8 * 1024);
        if tcp.read_buf(&mut carry).await? == 0 {
            return Ok(());
        }
        now = Instant::now();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---- idle ------------------------------------------------------------------------

/// The app's memory per idle keep-alive HTTP connection (one GET /healthz
/// each, then held open): what any connection costs before chat adds to it.
async fn idle(flags: &Flags) -> Result<serde_json::Value, Error> {
    let addr = flags.get("addr");
    let n: usize = flags.num("n");
    let app_pid: u32 = flags.num("app-pid");
    let before = rss_kib(app_pid);
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut sender = connect(&addr).await?;
        let req = Request::get("/healthz").header(HOST, &addr).body(empty())?;
        let resp = sender.send_request(req).await?;
        let _ = resp.into_body().collect().await?;
        held.push(sender);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(app_pid);
    let per = match (before, after) {
        (Some(b), Some(a)) => Some((a as f64 - b as f64) * 1024.0 / n as f64),
        _ => None,
    };
    drop(held);
    Ok(json!({
        "n": n,
        "rss_before_kib": before,
        "rss_connected_kib": after,
        "rss_per_connection_bytes": per,
    }))
}

// ---- storm ------------------------------------------------------------------------

async fn storm(flags: &Flags) -> Result<serde_json::Value, Error> {
    let addr = flags.get("addr");
    let stream: u64 = flags.num("stream");
    let n: usize = flags.num("n");
    let within = Duration::from_millis(flags.num("within-ms"));
    let viewers = read_sessions(&flags.get("sessions"), n)?;
    let path = format!("/s/{stream}/token");

    let start = Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::with_capacity(n);
    for (i, viewer) in viewers.into_iter().enumerate() {
        let (addr, path) = (addr.clone(), path.clone());
        // Evenly spread arrivals; each viewer on a connection of their own.
        let at = start + within.mul_f64(i as f64 / n as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            // Measured from the scheduled moment, so a client falling behind
            // counts against the server, not in its favour.
            let result = ask_token(&addr, &path, &viewer).await;
            (result, at.elapsed())
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    let mut statuses: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        let (result, took) = task.await?;
        let key = match result {
            Ok(status) => status.to_string(),
            Err(e) => format!("error: {e}"),
        };
        if key == "200" {
            latencies.push(took.as_secs_f64() * 1e3);
        }
        *statuses.entry(key).or_default() += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(json!({
        "n": n,
        "within_seconds": within.as_secs_f64(),
        "elapsed_seconds": elapsed,
        "ok": latencies.len(),
        "statuses": statuses,
        "latency": summary(latencies),
    }))
}

async fn ask_token(addr: &str, path: &str, viewer: &Viewer) -> Result<u16, Error> {
    let mut sender = connect(addr).await?;
    let req = Request::post(path)
        .header(HOST, addr)
        .header(COOKIE, format!("{SESSION_COOKIE}={}", viewer.cookie))
        .header("x-csrf-token", &viewer.csrf)
        .body(empty())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    if status == 200 && !body.starts_with(b"{\"token\":") {
        return Err("200 without a token".into());
    }
    Ok(status)
}
