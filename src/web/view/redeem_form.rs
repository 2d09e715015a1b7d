//! The redeem-a-code form: one self-contained fragment (root id
//! `redeem-form`) on the pass pages (`web::passes`), returned alone, with the
//! error next to the code field, when an htmx redemption is refused
//! (`web::grants::redeem`). It posts to /redeem; it redeems nothing itself.

use askama::Template;

#[derive(Template)]
#[template(path = "partials/grants/redeem_form.html")]
pub struct RedeemForm {
    pub csrf_token: String,
    /// Where /redeem sends the viewer once the code worked (a local path).
    pub return_to: String,
    /// The page with this form, where a refused code is explained (without
    /// JavaScript; with it, the error replaces the form in place).
    pub back_to: String,
    /// What was typed, shown again after a refusal.
    pub code: String,
    pub error: Option<String>,
}

impl RedeemForm {
    /// An empty form on the page `back_to` that goes on to `return_to`.
    pub fn new(csrf_token: &str, return_to: String, back_to: String) -> Self {
        RedeemForm {
            csrf_token: csrf_token.to_owned(),
            return_to,
            back_to,
            code: String::new(),
            error: None,
        }
    }
}
