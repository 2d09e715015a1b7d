//! Who may post, how much and how fast: the checks after the access rule has
//! said "watch". Every refusal carries the reason the poster reads under the
//! box. The facts (timeouts, the poster's recent messages) are measured in SQL
//! by `db::chat::recent_activity` while the stream row is locked, so two quick
//! posts cannot both slip through; this module only decides.

use chrono::{DateTime, Utc};

use crate::access::Denial;
use crate::db::chat::{Recent, Settings};

/// Everyone, team included: at most this many messages per window…
pub const RATE_LIMIT: i64 = 5;
pub const RATE_WINDOW_SECONDS: i32 = 10;
/// …and not the same text as one of their last few messages within this window.
pub const DUPLICATE_WINDOW_SECONDS: i32 = 30;
pub const DUPLICATE_OF_LAST: i64 = 3;

/// Why a message was not posted.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The access rule said no (sign in, no pass, banned).
    Denied(Denial),
    TimedOut {
        until: DateTime<Utc>,
    },
    ChatOff,
    /// Followers-only chat: they do not follow the channel (`wait` None), or
    /// have not followed it for long enough yet (`wait` until they have).
    FollowersOnly {
        min_seconds: i32,
        wait: Option<std::time::Duration>,
    },
    StreamEnded,
    Empty,
    TooLong {
        max: i32,
        length: usize,
    },
    SlowMode {
        wait_seconds: i64,
    },
    TooFast,
    Duplicate,
}

impl Refusal {
    pub fn reason(&self) -> String {
        match self {
            Refusal::Denied(d) => crate::chat::view::chat_denial(*d).to_owned(),
            Refusal::TimedOut { until } => crate::chat::view::timed_out_reason(*until),
            Refusal::ChatOff => "Chat is off for this stream.".to_owned(),
            Refusal::FollowersOnly { min_seconds, wait } => match wait {
                None if *min_seconds == 0 => {
                    "Chat is for the channel's followers: follow it to join in.".to_owned()
                }
                None => format!(
                    "Chat is for people who have followed the channel for at least {}: follow it to join in.",
                    follow_age(*min_seconds)
                ),
                Some(wait) => format!(
                    "Chat is for people who have followed the channel for at least {}: you can post in {}.",
                    follow_age(*min_seconds),
                    crate::limits::wait_in_words(*wait)
                ),
            },
            Refusal::StreamEnded => "The stream has ended; chat is closed.".to_owned(),
            Refusal::Empty => "Write a message first.".to_owned(),
            Refusal::TooLong { max, length } => {
                format!("Messages can be at most {max} characters long; yours has {length}.")
            }
            Refusal::SlowMode { wait_seconds } => format!(
                "Slow mode is on: you can send your next message in {wait_seconds} second{}.",
                if *wait_seconds == 1 { "" } else { "s" }
            ),
            Refusal::TooFast => format!(
                "You're sending messages too fast (at most {RATE_LIMIT} every {RATE_WINDOW_SECONDS} seconds). Wait a moment."
            ),
            Refusal::Duplicate => "You just sent that message. Say something new.".to_owned(),
        }
    }
}

/// A follow age in words ("10 minutes", "1 hour", "1 day", "1 week").
pub fn follow_age(seconds: i32) -> String {
    match seconds {
        604_800 => "1 week".to_owned(),
        86_400 => "1 day".to_owned(),
        3600 => "1 hour".to_owned(),
        s => crate::limits::wait_in_words(std::time::Duration::from_secs(s.max(0) as u64)),
    }
}

/// One line of text: control characters (newlines included) become spaces,
/// surrounding whitespace goes.
pub fn normalize(body: &str) -> String {
    body.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The length rule, before anything is asked of the database.
pub fn check_length(body: &str, settings: &Settings) -> Option<Refusal> {
    let length = body.chars().count();
    if length == 0 {
        return Some(Refusal::Empty);
    }
    if length > settings.max_length.max(1) as usize {
        return Some(Refusal::TooLong {
            max: settings.max_length,
            length,
        });
    }
    None
}

/// The checks in the order a poster should hear about them. `team`
/// (moderators and the owner) cannot be timed out and skip slow mode.
pub fn check(team: bool, settings: &Settings, body: &str, recent: &Recent) -> Option<Refusal> {
    if !team && let Some(until) = recent.timeout_until {
        return Some(Refusal::TimedOut { until });
    }
    if !settings.enabled {
        return Some(Refusal::ChatOff);
    }
    if !team && let Some(min) = settings.followers_min_seconds {
        match recent.followed_seconds {
            None => {
                return Some(Refusal::FollowersOnly {
                    min_seconds: min,
                    wait: None,
                });
            }
            Some(followed) if followed < f64::from(min) => {
                return Some(Refusal::FollowersOnly {
                    min_seconds: min,
                    wait: Some(std::time::Duration::from_secs_f64(
                        f64::from(min) - followed,
                    )),
                });
            }
            Some(_) => {}
        }
    }
    if let Some(r) = check_length(body, settings) {
        return Some(r);
    }
    if !team
        && settings.slow_mode_seconds > 0
        && let Some(wait) = recent.slow_mode_wait
        && wait > 0.0
    {
        return Some(Refusal::SlowMode {
            wait_seconds: wait.ceil() as i64,
        });
    }
    if recent.in_window >= RATE_LIMIT {
        return Some(Refusal::TooFast);
    }
    if recent.duplicate {
        return Some(Refusal::Duplicate);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            enabled: true,
            slow_mode_seconds: 30,
            delay_seconds: 0,
            max_length: 10,
            followers_min_seconds: None,
        }
    }

    fn quiet() -> Recent {
        Recent {
            timeout_until: None,
            slow_mode_wait: None,
            in_window: 0,
            duplicate: false,
            followed_seconds: None,
        }
    }

    #[test]
    fn the_team_skips_timeouts_and_slow_mode_but_not_the_rate_limit() {
        let until = Utc::now() + chrono::Duration::minutes(5);
        let busy = Recent {
            timeout_until: Some(until),
            slow_mode_wait: Some(12.2),
            ..quiet()
        };
        assert_eq!(
            check(false, &settings(), "hi", &busy),
            Some(Refusal::TimedOut { until })
        );
        assert_eq!(check(true, &settings(), "hi", &busy), None);
        let slow = Recent {
            slow_mode_wait: Some(12.2),
            ..quiet()
        };
        assert_eq!(
            check(false, &settings(), "hi", &slow),
            Some(Refusal::SlowMode { wait_seconds: 13 })
        );
        let flood = Recent {
            in_window: RATE_LIMIT,
            ..quiet()
        };
        assert_eq!(
            check(true, &settings(), "hi", &flood),
            Some(Refusal::TooFast)
        );
    }

    #[test]
    fn length_counts_characters_and_bodies_are_one_trimmed_line() {
        assert_eq!(normalize("  a\r\nb\t "), "a  b");
        assert_eq!(check(false, &settings(), "ééééééééé", &quiet()), None);
        assert_eq!(
            check(false, &settings(), "12345678901", &quiet()),
            Some(Refusal::TooLong {
                max: 10,
                length: 11
            })
        );
        assert_eq!(
            check(false, &settings(), "", &quiet()),
            Some(Refusal::Empty)
        );
    }

    #[test]
    fn followers_only_chat_says_how_long_is_left_and_spares_the_team() {
        let hour = Settings {
            followers_min_seconds: Some(3600),
            ..settings()
        };
        let refusal = check(false, &hour, "hi", &quiet()).unwrap();
        assert_eq!(
            refusal.reason(),
            "Chat is for people who have followed the channel for at least 1 hour: follow it to join in."
        );
        let fresh = Recent {
            followed_seconds: Some(60.0 * 48.5),
            ..quiet()
        };
        assert_eq!(
            check(false, &hour, "hi", &fresh).unwrap().reason(),
            "Chat is for people who have followed the channel for at least 1 hour: you can post in 12 minutes."
        );
        let old = Recent {
            followed_seconds: Some(3601.0),
            ..quiet()
        };
        assert_eq!(check(false, &hour, "hi", &old), None);
        assert_eq!(check(true, &hour, "hi", &quiet()), None);
        let any = Settings {
            followers_min_seconds: Some(0),
            ..settings()
        };
        assert_eq!(
            check(false, &any, "hi", &quiet()).unwrap().reason(),
            "Chat is for the channel's followers: follow it to join in."
        );
        assert_eq!(
            check(
                false,
                &any,
                "hi",
                &Recent {
                    followed_seconds: Some(0.5),
                    ..quiet()
                }
            ),
            None
        );
        assert_eq!(follow_age(600), "10 minutes");
        assert_eq!(follow_age(86_400), "1 day");
        assert_eq!(follow_age(604_800), "1 week");
    }
}
