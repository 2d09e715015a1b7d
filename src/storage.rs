//! S3 (AWS or any S3-compatible store, s3s-fs in tests): where egress writes
//! recordings, and where the app keeps the images it re-encoded (thumbnails,
//! avatars). For recordings the app only reads metadata, issues short-lived
//! presigned GET URLs for playback, and deletes objects; it never streams
//! media itself. Images are small: `put` and `get` move them whole.
//! Nothing here decides who may play what (that is `access.rs`), and secrets
//! never reach a log line (`Credentials`' `Debug` redacts them).

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Builder, Credentials, Region};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_smithy_http_client::tls;
use secrecy::ExposeSecret;

use crate::config::S3Config;

/// How long a playback URL works: long enough to start playing (browsers
/// fetch ranges as they go, and a paused video resumes with a new page load).
pub const PLAYBACK_URL_TTL: Duration = Duration::from_secs(10 * 60);

/// The recordings bucket.
pub struct Storage {
    client: Client,
    bucket: String,
}

/// What went wrong with S3, in words for the owner (never with credentials).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(String);

impl StorageError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl Storage {
    pub fn new(config: &S3Config) -> Self {
        // rustls on ring, like reqwest: the SDK's default client brings aws-lc-rs.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(
                tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let credentials = Credentials::new(
            config.access_key_id.clone(),
            config.secret_access_key.expose_secret().to_owned(),
            None,
            None,
            "stagepass-config",
        );
        let mut builder = Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(config.force_path_style)
            .http_client(http);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint.as_str().trim_end_matches('/'));
        }
        Self {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Whether the bucket exists and the credentials reach it. `Err` says
    /// which, for the start-up warning and the recording button.
    pub async fn check(&self) -> Result<(), StorageError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                Err(StorageError(match status {
                    Some(404) => format!("the bucket \"{}\" does not exist", self.bucket),
                    Some(401 | 403) => format!(
                        "the S3 credentials were refused for the bucket \"{}\" (check S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY)",
                        self.bucket
                    ),
                    Some(code) => format!("S3 answered {code} for the bucket \"{}\"", self.bucket),
                    None => {
                        tracing::warn!(error = %DisplayErrorContext(&e), "S3: checking the bucket");
                        "S3 could not be reached (check S3_ENDPOINT)".to_owned()
                    }
                }))
            }
        }
    }

    /// A GET URL for `key` that works for `PLAYBACK_URL_TTL`.
    pub async fn playback_url(&self, key: &str) -> Result<String, StorageError> {
        let presigning = PresigningConfig::expires_in(PLAYBACK_URL_TTL)
            .map_err(|e| StorageError(e.to_string()))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(|e| StorageError(format!("presigning: {}", DisplayErrorContext(&e))))?;
        Ok(request.uri().to_owned())
    }

    /// The object's size in bytes; `None` when it does not exist.
    pub async fn size(&self, key: &str) -> Result<Option<i64>, StorageError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(head.content_length().unwrap_or(0))),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(StorageError(format!("head: {}", DisplayErrorContext(&e)))),
        }
    }

    /// Deletes the object; deleting a missing object is harmless.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(()),
            Err(e) => Err(StorageError(format!("delete: {}", DisplayErrorContext(&e)))),
        }
    }
}

impl Storage {
    /// Stores `bytes` at `key` with its content type (small objects: images).
    pub async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
    ) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(bytes.into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StorageError(format!("put: {}", DisplayErrorContext(&e))))
    }

    /// The object's bytes and content type; `None` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, StorageError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(object) => {
                let content_type = object
                    .content_type()
                    .unwrap_or("application/octet-stream")
                    .to_owned();
                let bytes = object
                    .body
                    .collect()
                    .await
                    .map_err(|e| StorageError(format!("get: reading the body: {e}")))?
                    .into_bytes()
                    .to_vec();
                Ok(Some((bytes, content_type)))
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(StorageError(format!("get: {}", DisplayErrorContext(&e)))),
        }
    }
}

/// Multipart uploads: how the built-in recorder streams a recording to the
/// bucket while it records (parts of at least 5 MiB, except the last).
impl Storage {
    /// Starts a multipart upload of `key`; answers its upload id.
    pub async fn start_upload(
        &self,
        key: &str,
        content_type: &str,
    ) -> Result<String, StorageError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| {
                StorageError(format!(
                    "create multipart upload: {}",
                    DisplayErrorContext(&e)
                ))
            })?;
        out.upload_id().map(str::to_owned).ok_or_else(|| {
            StorageError("create multipart upload: no upload id in the answer".into())
        })
    }

    /// Uploads part `number` (1-based; uploading a number again replaces it);
    /// answers the part's ETag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        bytes: bytes::Bytes,
    ) -> Result<String, StorageError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(bytes.into())
            .send()
            .await
            .map_err(|e| {
                StorageError(format!("upload part {number}: {}", DisplayErrorContext(&e)))
            })?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    /// Completes the upload from its parts (number, ETag) in order.
    pub async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), StorageError> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        let parts = parts
            .iter()
            .map(|(n, etag)| {
                CompletedPart::builder()
                    .part_number(*n)
                    .set_e_tag((!etag.is_empty()).then(|| etag.clone()))
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map(drop)
            .map_err(|e| {
                StorageError(format!(
                    "complete multipart upload: {}",
                    DisplayErrorContext(&e)
                ))
            })
    }

    /// The parts uploaded so far: (number, ETag, size), in order. (Some
    /// S3-compatible stores, s3s-fs among them, list no ETags; they do not
    /// check them on completion either.)
    pub async fn uploaded_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<(i32, String, i64)>, StorageError> {
        let mut parts: Vec<(i32, String, i64)> = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(|e| StorageError(format!("list parts: {}", DisplayErrorContext(&e))))?;
            parts.extend(out.parts().iter().filter_map(|p| {
                Some((
                    p.part_number()?,
                    p.e_tag().unwrap_or_default().to_owned(),
                    p.size().unwrap_or(0),
                ))
            }));
            match (out.is_truncated(), out.next_part_number_marker()) {
                (Some(true), Some(next)) => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        parts.sort_by_key(|(n, _, _)| *n);
        Ok(parts)
    }

    /// Gives up an upload and frees its parts; a missing upload is harmless.
    pub async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), StorageError> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(()),
            Err(e) => Err(StorageError(format!(
                "abort multipart upload: {}",
                DisplayErrorContext(&e)
            ))),
        }
    }
}

/// The start-up check: a warning an operator can act on, never a crash.
pub async fn warn_if_unusable(storage: &Storage) {
    match tokio::time::timeout(Duration::from_secs(10), storage.check()).await {
        Ok(Ok(())) => tracing::info!(bucket = storage.bucket(), "S3 bucket reachable"),
        Ok(Err(e)) => tracing::warn!(
            problem = %e,
            "S3 is not usable: recordings cannot be started or played until this is fixed"
        ),
        Err(_) => tracing::warn!("S3 did not answer within 10 s: recordings may not work"),
    }
}
