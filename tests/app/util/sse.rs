//! A chat stream read as a browser's EventSource reads it: a tiny parser
//! of server-sent events over reqwest's byte stream, minus the reconnecting
//! (tests reconnect themselves, with `Last-Event-ID`, to see what resumes).

use std::time::Duration;

use reqwest::StatusCode;

use super::Browser;

/// Long enough for anything that should arrive; short enough to fail fast.
pub const ARRIVES: Duration = Duration::from_secs(10);

/// One server-sent event.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl Event {
    /// One block of an event stream (up to its blank line); None for a block
    /// of comments alone (keep-alives).
    pub fn parse(block: &str) -> Option<Event> {
        let mut event = Event {
            event: "message".into(),
            ..Event::default()
        };
        let mut data: Vec<&str> = Vec::new();
        let mut any = false;
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "" => continue, // a comment (keep-alive)
                "event" => event.event = value.to_owned(),
                "id" => event.id = Some(value.to_owned()),
                "data" => data.push(value),
                _ => {}
            }
            any = true;
        }
        event.data = data.join("\n");
        any.then_some(event)
    }
}

/// An EventSource on a real HTTP response (reqwest's `chunk`, as they arrive).
pub struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    pub async fn open(who: &Browser, path: &str, last_event_id: Option<&str>) -> Sse {
        let (status, sse) = Self::try_open(who, path, last_event_id).await;
        assert_eq!(status, StatusCode::OK);
        sse.unwrap()
    }

    pub async fn try_open(
        who: &Browser,
        path: &str,
        last_event_id: Option<&str>,
    ) -> (StatusCode, Option<Sse>) {
        Self::connect(who, path, last_event_id)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Like `try_open`, but a server that is not there (down, restarting) is
    /// an `Err`, as it is to a browser, which then tries again.
    pub async fn connect(
        who: &Browser,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<(StatusCode, Option<Sse>), reqwest::Error> {
        let mut request = who
            .client
            .get(who.url(path))
            .header("Accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await?;
        let status = response.status();
        if status != StatusCode::OK {
            return Ok((status, None));
        }
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let sse = Sse {
            response,
            buffer: String::new(),
        };
        Ok((status, Some(sse)))
    }

    /// The next event within `wait`; None on timeout or when the stream ends.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Event> {
        tokio::time::timeout(wait, self.next()).await.ok().flatten()
    }

    /// The next event; None when the stream ends (or the connection drops).
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = Event::parse(&block) {
                    return Some(event);
                }
                continue;
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => self
                    .buffer
                    .push_str(&String::from_utf8_lossy(&bytes).replace("\r\n", "\n")),
                _ => return None,
            }
        }
    }

    /// The next event of the chat log (`chat`, `delete`, `denied`), which
    /// must come. The team's `held` list updates are skipped.
    pub async fn expect(&mut self, what: &str) -> Event {
        loop {
            let e = self
                .next_within(ARRIVES)
                .await
                .unwrap_or_else(|| panic!("no SSE event arrived: expected {what}"));
            if e.event != "held" {
                return e;
            }
        }
    }

    /// The next `held` list update, which must come.
    pub async fn expect_held(&mut self, what: &str) -> Event {
        loop {
            let e = self
                .next_within(ARRIVES)
                .await
                .unwrap_or_else(|| panic!("no SSE event arrived: expected {what}"));
            if e.event == "held" {
                return e;
            }
        }
    }

    /// Every event of the chat log that arrives within `wait` (not `held`).
    pub async fn drain(&mut self, wait: Duration) -> Vec<Event> {
        let mut out = Vec::new();
        let until = tokio::time::Instant::now() + wait;
        while let Some(e) = self
            .next_within(until.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            if e.event != "held" {
                out.push(e);
            }
        }
        out
    }
}

/// The text of a chat event's message body.
pub fn body_of(e: &Event) -> String {
    let html = scraper::Html::parse_fragment(&e.data);
    let sel = scraper::Selector::parse(".chat-body").unwrap();
    html.select(&sel)
        .next()
        .map(|b| b.text().collect())
        .unwrap_or_default()
}
