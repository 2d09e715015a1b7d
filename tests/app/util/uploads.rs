//! Files in tests: PNGs, multipart uploads as htmx and plain forms post them,
//! raw GETs, and the objects in the run's S3 bucket.

use diesel_async::RunQueryDsl;
use reqwest::StatusCode;

use super::{Browser, Page, TestApp};

/// A PNG of `w`x`h` pixels.
pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(w, h, |x, y| {
        image::Rgba([(x % 256) as u8, (y % 256) as u8, 90, 255])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// Posts a file the way htmx does (`hx-encoding="multipart/form-data"`): the
/// CSRF token in the header, the file under `field` with the given name and
/// the Content-Type the client claims.
pub async fn upload(
    browser: &Browser,
    path: &str,
    field: &str,
    filename: &str,
    content_type: &str,
    bytes: &[u8],
) -> Page {
    let token = browser.csrf_token().await;
    upload_as(
        browser,
        path,
        (field, filename, content_type, bytes),
        Some(&token),
        &token,
    )
    .await
}

/// Posts a file as a plain form does with JavaScript off: no htmx headers, the
/// CSRF token (`field_token`) only in the form's `csrf_token` field.
pub async fn upload_without_js(
    browser: &Browser,
    path: &str,
    file: (&str, &str, &str, &[u8]),
    field_token: &str,
) -> Page {
    upload_as(browser, path, file, None, field_token).await
}

/// `file` is (field, file name, claimed Content-Type, bytes); `header_token`
/// set means an htmx request carrying the token in its header.
async fn upload_as(
    browser: &Browser,
    path: &str,
    (field, filename, content_type, bytes): (&str, &str, &str, &[u8]),
    header_token: Option<&str>,
    token: &str,
) -> Page {
    let boundary = format!("----stagepass{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::new();
    body.extend(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{token}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n\
             Content-Type: {content_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut request = browser.client.post(browser.url(path)).header(
        "Content-Type",
        format!("multipart/form-data; boundary={boundary}"),
    );
    if let Some(header_token) = header_token {
        request = request
            .header("HX-Request", "true")
            .header("X-CSRF-Token", header_token);
    }
    Browser::read(request.body(body).send().await.unwrap()).await
}

/// The raw bytes of a GET, with its response headers.
pub async fn fetch(
    browser: &Browser,
    path: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let response = browser.client.get(browser.url(path)).send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

/// Every object under `prefix` in the test bucket.
pub async fn objects(app: &TestApp, prefix: &str) -> Vec<String> {
    let s3 = &app.state.config.s3;
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(s3.region.clone()))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            s3.access_key_id.clone(),
            secrecy::ExposeSecret::expose_secret(&s3.secret_access_key).to_owned(),
            None,
            None,
            "test",
        ))
        .force_path_style(true)
        .endpoint_url(s3.endpoint.as_ref().unwrap().as_str().trim_end_matches('/'))
        .http_client(http)
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    let listed = client
        .list_objects_v2()
        .bucket(&s3.bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

/// Every test app has its own database but all share one bucket: start this
/// app's stream ids somewhere no other test reaches, so prefixes are its own.
pub async fn unique_ids(app: &TestApp, table: &str) {
    let start = 1_000_000 + (rand::random::<u32>() as i64 % 1_000_000_000);
    diesel::sql_query(format!(
        "ALTER TABLE {table} ALTER COLUMN id RESTART WITH {start}"
    ))
    .execute(&mut *app.conn().await)
    .await
    .unwrap();
}
