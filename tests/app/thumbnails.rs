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
use stagepass::db::streams::Status;

use crate::util::builders::create_channel;
use crate::util::builders::stream_at;
use crate::util::uploads::{fetch, objects, png, unique_ids, upload, upload_without_js};
use crate::util::{Browser, TestApp, builders};

async fn key_of(app: &TestApp, stream: StreamId) -> Option<String> {
    streams::table
        .find(stream)
        .select(streams::thumbnail_key)
        .first(&mut *app.conn().await)
        .await
        .unwrap()
}

async fn setup() -> (TestApp, Browser, StreamId) {
    let app = TestApp::spawn().await;
    unique_ids(&app, "streams").await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let ch = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let stream = stream_at(&app, ch, "Friday session", Status::Draft, None, Some(120)).await;
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
    let draft = stream_at(&app, ch, "Not announced", Status::Draft, None, None).await;
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
