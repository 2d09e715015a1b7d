//! `AppState`: the one state every handler takes — config, database pool,
//! LiveKit clients, the payment provider, the metrics handle, the chat hub,
//! this instance's recorders, what its reconciler remembers, its recent
//! viewer counts and the chat panel's recent messages. Cheap to clone (an `Arc`).

use std::ops::Deref;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::chat::Hub;
use crate::config::Config;
use crate::db::DbPool;
use crate::livekit::LiveKit;
use crate::payments::{self, PaymentProvider};
use crate::storage::Storage;

#[derive(Clone)]
pub struct AppState(Arc<App>);

pub struct App {
    pub config: Config,
    pub db: DbPool,
    pub livekit: LiveKit,
    /// The checkout provider PAYMENTS_PROVIDER chose (Stripe or dev).
    pub payments: Arc<dyn PaymentProvider>,
    pub metrics: PrometheusHandle,
    /// This instance's chat subscribers by stream (fed by `chat::bridge`).
    pub chat: Hub,
    /// The recordings bucket.
    pub storage: Storage,
    /// This instance's built-in recorders (`src/recorder/`).
    pub recorders: crate::recorder::Recorders,
    /// Live streams whose LiveKit node stopped answering, as this
    /// instance's reconciler saw them (`lifecycle::reconcile`).
    pub stranded: crate::lifecycle::Stranded,
    /// Viewer counts of live streams, a second old at most.
    pub viewer_counts: crate::db::presence::ViewerCounts,
    /// The chat panel's last messages by stream and cursor.
    pub chat_recent: crate::chat::recent::RecentMessages,
}

impl AppState {
    pub fn new(config: Config, db: DbPool) -> Self {
        let livekit = LiveKit::new(&config.livekit);
        let payments = payments::from_config(&config);
        let metrics = crate::telemetry::metrics_handle();
        let storage = Storage::new(&config.s3);
        Self(Arc::new(App {
            config,
            db,
            livekit,
            payments,
            metrics,
            chat: Hub::new(),
            storage,
            recorders: Default::default(),
            stranded: Default::default(),
            viewer_counts: Default::default(),
            chat_recent: Default::default(),
        }))
    }
}

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}
