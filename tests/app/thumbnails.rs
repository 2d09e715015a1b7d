//! Stream thumbnails: the owner uploads one on the studio stream page; it is
//! checked by content (a renamed text file is refused, with the reason next
//! to the field, and nothing is stored), re-encoded within 1280x720, stored in
//! the real S3 server (s3s-fs), served at /s/{id}/thumbnail with an ETag, and
//! replaced or removed without leaving the old object behind. Drafts' thumbnails
//! are not shown to strangers.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::StreamId;
use stagepass::db::schema::streams;

use crate::channels::create_channel;
use crate::discover::stream_at;
use crate::util::{Browser, Page, TestApp, builders};

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

async fn key_of(app: &TestApp, stream: StreamId) -> Option<String> {
    streams::table
        .find(stream)
        .select(streams::thumbnail_key)
        .first(&mut *app.conn().await)
        .await
        .unwrap()
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

async fn setup() -> (TestApp, Browser, StreamId) {
    let app = TestApp::spawn().await;
    unique_ids(&app, "streams").await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let ch = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let stream = stream_at(&app, ch, "Friday session", "draft", None, Some(120)).await;
    (app, ann, stream)
}

#[tokio::test]
async fn a_renamed_text_file_is_refused_with_a_clear_message_and_nothing_is_stored() {
    let (app, ann, stream) = setup().await;
    let page = ann.get(&format!("/studio/streams/{stream}")).await;
    assert_eq!(
        page.attr("#thumbnail-form", "hx-encoding").as_deref(),
        Some("multipart/form-data")
    );
    assert_eq!(
        page.attr("#thumbnail-preview", "src"),
        Some(format!("/s/{stream}/thumbnail"))
    );

    let path = format!("/studio/streams/{stream}/thumbnail");
    let refused = upload(
        &ann,
        &path,
        "thumbnail",
        "holiday.png",
        "image/png",
        b"Dear diary, today I...\n",
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused.text_of("#thumbnail-error"),
        "That file is not a PNG, JPEG or WebP image. Choose an image file (renaming a file does not make it one)."
    );
    assert_eq!(
        refused.attr("#thumbnail", "aria-invalid").as_deref(),
        Some("true")
    );
    assert_eq!(key_of(&app, stream).await, None);
    assert!(
        objects(&app, &format!("thumbnails/{stream}/"))
            .await
            .is_empty()
    );

    // Too big: refused before it is decoded (just over the limit, so the
    // client has sent it all when the answer comes).
    let big = vec![0x89u8; 5 * 1024 * 1024 + 1024];
    let too_big = upload(&ann, &path, "thumbnail", "big.png", "image/png", &big).await;
    assert_eq!(
        too_big.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        too_big.text
    );
    assert!(
        too_big
            .text_of("#thumbnail-error")
            .contains("larger than 5 MiB")
    );
    assert!(
        objects(&app, &format!("thumbnails/{stream}/"))
            .await
            .is_empty()
    );

    // The default image is served meanwhile.
    let (status, headers, body) = fetch(&app.anonymous(), &format!("/s/{stream}/thumbnail")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/svg+xml");
    assert!(String::from_utf8(body).unwrap().contains("<svg"));
}

#[tokio::test]
async fn a_png_is_reencoded_within_bounds_and_replacing_it_deletes_the_old_object() {
    let (app, ann, stream) = setup().await;
    let path = format!("/studio/streams/{stream}/thumbnail");
    // Named and labelled wrongly on purpose: only the content counts.
    let saved = upload(
        &ann,
        &path,
        "thumbnail",
        "photo.txt",
        "text/plain",
        &png(2000, 1500),
    )
    .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    assert_eq!(
        saved.text_of("#thumbnail-panel .form-success"),
        "Thumbnail saved."
    );
    let first = key_of(&app, stream).await.expect("a thumbnail key");
    assert!(
        first.starts_with(&format!("thumbnails/{stream}/")) && first.ends_with(".jpg"),
        "{first}"
    );
    assert_eq!(
        objects(&app, &format!("thumbnails/{stream}/")).await,
        vec![first.clone()]
    );
    let src = saved.attr("#thumbnail-preview", "src").unwrap();
    assert!(
        src.starts_with(&format!("/s/{stream}/thumbnail?v=")),
        "{src}"
    );

    let anon = app.anonymous();
    let (status, headers, body) = fetch(&anon, &format!("/s/{stream}/thumbnail")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/jpeg");
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public")
    );
    let decoded = image::load_from_memory(&body).expect("a real image");
    assert_eq!(
        image::guess_format(&body).unwrap(),
        image::ImageFormat::Jpeg
    );
    assert_eq!(
        (decoded.width(), decoded.height()),
        (960, 720),
        "fits 1280x720, aspect kept"
    );

    // The ETag saves a second download.
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let again = anon
        .client
        .get(anon.url(&format!("/s/{stream}/thumbnail")))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    // The discover card links the versioned URL.
    let home = anon.get("/").await;
    assert_eq!(
        home.attr(
            &format!(".stream-card[data-stream-id=\"{stream}\"] img"),
            "src"
        ),
        Some(src.clone())
    );

    // Replacing: a new object, the old one gone.
    let replaced = upload(
        &ann,
        &path,
        "thumbnail",
        "small.png",
        "image/png",
        &png(400, 300),
    )
    .await;
    assert_eq!(replaced.status, StatusCode::OK);
    let second = key_of(&app, stream).await.unwrap();
    assert_ne!(first, second);
    assert_eq!(
        objects(&app, &format!("thumbnails/{stream}/")).await,
        vec![second.clone()]
    );
    assert_eq!(app.state.storage.size(&first).await.unwrap(), None);
    let (_, headers, body) = fetch(&anon, &format!("/s/{stream}/thumbnail")).await;
    assert_ne!(headers["etag"].to_str().unwrap(), etag);
    let decoded = image::load_from_memory(&body).unwrap();
    assert_eq!(
        (decoded.width(), decoded.height()),
        (400, 300),
        "small images are not enlarged"
    );

    // Removing: the object goes, the default comes back.
    let removed = ann
        .post_htmx(&format!("/studio/streams/{stream}/thumbnail/delete"), &[])
        .await;
    assert_eq!(removed.status, StatusCode::OK);
    assert!(!removed.has("#thumbnail-remove-form"));
    assert_eq!(key_of(&app, stream).await, None);
    assert!(
        objects(&app, &format!("thumbnails/{stream}/"))
            .await
            .is_empty()
    );
    let (_, headers, _) = fetch(&anon, &format!("/s/{stream}/thumbnail")).await;
    assert_eq!(headers["content-type"], "image/svg+xml");
}

#[tokio::test]
async fn a_drafts_thumbnail_is_not_served_to_strangers() {
    let app = TestApp::spawn().await;
    unique_ids(&app, "streams").await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let ch = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let draft = stream_at(&app, ch, "Not announced", "draft", None, None).await;
    let saved = upload(
        &ann,
        &format!("/studio/streams/{draft}/thumbnail"),
        "thumbnail",
        "t.png",
        "image/png",
        &png(64, 36),
    )
    .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    let path = format!("/s/{draft}/thumbnail");

    let (owner, headers, _) = fetch(&ann, &path).await;
    assert_eq!(owner, StatusCode::OK);
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("private")
    );
    let (mo, mo_id) = builders::user(&app, "mo@example.com", "Mo").await;
    builders::moderator(&app, ch, mo_id).await;
    assert_eq!(fetch(&mo, &path).await.0, StatusCode::OK);

    let (stranger, _) = builders::user(&app, "eve@example.com", "Eve").await;
    assert_eq!(fetch(&stranger, &path).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        fetch(&app.anonymous(), &path).await.0,
        StatusCode::NOT_FOUND
    );

    // Nobody but the owner may change it.
    let refused = upload(
        &mo,
        &format!("/studio/streams/{draft}/thumbnail"),
        "thumbnail",
        "t.png",
        "image/png",
        &png(8, 8),
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // To a stranger the unannounced draft does not exist.
    let refused = stranger
        .post_htmx(&format!("/studio/streams/{draft}/thumbnail/delete"), &[])
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert!(key_of(&app, draft).await.is_some());

    // Announced (scheduled), it is public.
    diesel::update(streams::table.find(draft))
        .set(streams::scheduled_at.eq(Some(chrono::Utc::now() + chrono::Duration::hours(1))))
        .execute(&mut *app.conn().await)
        .await
        .unwrap();
    assert_eq!(fetch(&app.anonymous(), &path).await.0, StatusCode::OK);
    assert_eq!(
        fetch(&app.anonymous(), "/s/999999999999/thumbnail").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn without_javascript_the_upload_form_works_with_its_token_field() {
    let (app, ann, stream) = setup().await;
    let path = format!("/studio/streams/{stream}/thumbnail");
    // Noise (PNG cannot compress it): larger than the part of an upload the
    // CSRF check reads for the token, so the rest must stream through.
    let noise = image::RgbaImage::from_fn(640, 360, |x, y| {
        let v =
            (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)).wrapping_mul(2_246_822_519);
        image::Rgba([v as u8, (v >> 8) as u8, (v >> 16) as u8, 255])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    noise.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    let bytes = bytes.into_inner();
    assert!(bytes.len() > 64 * 1024, "{} bytes", bytes.len());
    let file = ("thumbnail", "cover.png", "image/png", &bytes[..]);

    let forged = upload_without_js(&ann, &path, file, "not-the-token").await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(
        key_of(&app, stream).await,
        None,
        "a forged form changes nothing"
    );

    let token = ann.csrf_token().await;
    let sent = upload_without_js(&ann, &path, file, &token).await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.text);
    assert!(key_of(&app, stream).await.is_some());
    let (status, headers, _) = fetch(&ann, &format!("/s/{stream}/thumbnail")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("image/jpeg")
    );
}
