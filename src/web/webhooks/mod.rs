//! The services' incoming webhooks, side by side: LiveKit's room, track and
//! egress events (`livekit`) and Stripe's payment events (`stripe`). Both
//! are verified against their signature before anything is read, are exempt
//! from CSRF (auth/csrf.rs), and apply each event once.

mod livekit;
mod stripe;

pub use livekit::livekit;
pub use stripe::stripe;
