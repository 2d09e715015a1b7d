//! The home page. Discovery (live now, starting soon) arrives with streams.

use askama::Template;
use axum::response::Response;

use super::{Layout, render};
use crate::error::AppResult;

#[derive(Template)]
#[template(path = "pages/home.html")]
pub struct HomePage {
    pub layout: Layout,
}

pub async fn show(layout: Layout) -> AppResult<Response> {
    render(&HomePage { layout })
}
