//! The OCI Distribution API (v1.1) under `/v2/`: what `wkg` 0.16+ and
//! every OCI client speak. The handlers only translate HTTP; what is
//! allowed and what is recorded is decided in `cairn_service::oci`.
//!
//! Unauthenticated requests to `/v2/` get a `Bearer` challenge naming the
//! token endpoint (`/v2/token`), so that clients holding credentials send
//! them; with anonymous reads on, the endpoint hands anonymous callers a
//! token that reads only.

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_blob::ByteStream;
use cairn_service::identity::Caller;
use cairn_service::oci::{
    ANONYMOUS_TOKEN, IMAGE_INDEX, IssuedToken, MAX_MANIFEST_BYTES, OciCode, OciError, Reference,
    StartedUpload, UploadStart, parse_oci_digest,
};
use futures_util::TryStreamExt as _;

use super::AppState;
use super::content::{Range, parse_range};

type Result<T = Response> = std::result::Result<T, OciResponse>;

const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
const FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");
/// `<logId>/<recordId>` of the record a manifest answer comes from.
const CAIRN_RECORD: HeaderName = HeaderName::from_static("cairn-record");
/// The largest page of tags (a `Link` header points at the rest).
const MAX_TAGS_PAGE: usize = 10_000;

/// An OCI error on its way out: the spec's `{"errors": [...]}` envelope,
/// with the challenge for 401s and `Retry-After` for 503s.
#[derive(Debug)]
pub struct OciResponse {
    error: OciError,
    realm: String,
    /// Extra headers (an upload's `Location` and `Range` on a 416).
    headers: Vec<(HeaderName, String)>,
}

impl IntoResponse for OciResponse {
    fn into_response(self) -> Response {
        let error = self.error;
        let status =
            StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({
            "errors": [{ "code": error.code.as_str(), "message": error.message, "detail": null }]
        });
        let mut response = super::error::json(status, &body);
        let headers = response.headers_mut();
        if error.status == 401 {
            headers.insert(
                header::WWW_AUTHENTICATE,
                challenge(&self.realm, error.scope.as_deref()),
            );
        }
        if let Some(seconds) = error.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

/// `error` in the OCI format, for middleware that answers before a handler.
pub(super) fn respond(state: &AppState, error: OciError) -> Response {
    Ctx { state }.fail(error).into_response()
}

fn challenge(realm: &str, scope: Option<&str>) -> HeaderValue {
    let mut value = format!("Bearer realm=\"{realm}\",service=\"cairn\"");
    if let Some(scope) = scope {
        value.push_str(&format!(",scope=\"{scope}\""));
    }
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("Bearer"))
}

/// Wraps service errors with what the response needs.
struct Ctx<'a> {
    state: &'a AppState,
}

impl Ctx<'_> {
    fn realm(&self) -> String {
        format!("{}/v2/token", self.state.registry.config().public_url)
    }

    fn fail(&self, error: OciError) -> OciResponse {
        OciResponse {
            error,
            realm: self.realm(),
            headers: Vec::new(),
        }
    }

    fn err<T>(&self, result: std::result::Result<T, OciError>) -> Result<T> {
        result.map_err(|e| self.fail(e))
    }

    /// The caller: `None` when anonymous. Bad credentials are a 401, never
    /// silently anonymous.
    async fn caller(&self, headers: &HeaderMap) -> Result<Option<Caller>> {
        let token = super::auth::token(headers).map_err(|e| self.fail(OciError::from(e)))?;
        match token {
            None => Ok(None),
            Some(token) if token == ANONYMOUS_TOKEN => Ok(None),
            Some(token) => self
                .state
                .registry
                .authenticate(&token)
                .await
                .map(Some)
                .map_err(|e| self.fail(OciError::from(e))),
        }
    }
}

fn repository(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// For a repository of an imported namespace: fetches from the upstream
/// what is missing (all versions, or the one `reference` names) first.
/// Callers MUST have checked read access (`oci_authorize_read`) first: an
/// unauthorised request must cause no upstream request.
async fn pull_through(state: &AppState, ns: &str, name: &str, reference: Option<&str>) {
    if let Ok(package) = cairn_protocol::PackageName::new(format!("{ns}:{name}")) {
        if reference.is_some_and(|r| r.contains(':')) {
            return;
        }
        let reference = reference.filter(|r| *r != "latest");
        state
            .mirror
            .sync(&state.registry, &package, reference)
            .await;
    }
}

/// Query parameters, percent-decoded. `+` stays `+`: clients send media
/// types (`artifactType=application/vnd.x+json`) raw, and nothing else
/// cairn reads can contain a space.
pub(super) fn query(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn body_stream(body: Body) -> ByteStream {
    Box::pin(
        body.into_data_stream()
            .map_err(|e| std::io::Error::other(e.to_string())),
    )
}

fn with_headers(
    status: StatusCode,
    headers: Vec<(HeaderName, String)>,
    body: impl Into<Body>,
) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// `Range: 0-<last byte>` of an upload of `size` bytes (`0-0` when empty,
/// as CNCF distribution answers).
fn upload_range(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn upload_headers(repository: &str, id: &str, size: u64) -> Vec<(HeaderName, String)> {
    vec![
        (
            header::LOCATION,
            format!("/v2/{repository}/blobs/uploads/{id}"),
        ),
        (header::RANGE, upload_range(size)),
        (UPLOAD_UUID, id.to_owned()),
        (header::CONTENT_LENGTH, "0".into()),
    ]
}

fn blob_created(repository: &str, digest: &str) -> Response {
    with_headers(
        StatusCode::CREATED,
        vec![
            (header::LOCATION, format!("/v2/{repository}/blobs/{digest}")),
            (CONTENT_DIGEST, digest.to_owned()),
            (header::CONTENT_LENGTH, "0".into()),
        ],
        Body::empty(),
    )
}

/// `GET /v2/`: 200 for valid credentials, else a challenge.
pub(super) async fn ping(State(state): State<AppState>, headers: HeaderMap) -> Result {
    let ctx = Ctx { state: &state };
    match ctx.caller(&headers).await? {
        // An anonymous token is a valid answer to the challenge.
        Some(_) => {}
        None if super::auth::token(&headers).ok().flatten().is_some() => {}
        None => {
            return Err(ctx.fail(OciError::new(
                OciCode::Unauthorized,
                "authentication required: get a token from the realm in WWW-Authenticate",
            )));
        }
    }
    let mut response = super::error::json(StatusCode::OK, &serde_json::json!({}));
    response
        .headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    Ok(response)
}

/// `GET /v2/token?service=&scope=`: the token endpoint of the Bearer flow.
/// Credentials come as Basic (any user name, a cairn token as the
/// password) or Bearer.
pub(super) async fn token(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result {
    let ctx = Ctx { state: &state };
    let caller = ctx.caller(&headers).await?;
    let params = query(raw.as_deref());
    let scopes = params
        .iter()
        .filter(|(k, _)| k == "scope")
        // Several scopes may also come space-separated in one parameter.
        .flat_map(|(_, v)| v.split(' '))
        .collect::<Vec<_>>();
    let issued = ctx.err(
        state
            .registry
            .oci_token(caller.as_ref(), scopes.iter().copied())
            .await,
    )?;
    let (token, expires_in) = match &issued {
        IssuedToken::Anonymous => (ANONYMOUS_TOKEN.to_owned(), 3600),
        IssuedToken::Session(new) => {
            let lifetime = new
                .row
                .expires_at_ms
                .map_or(0, |at| (at - new.row.created_at_ms) / 1000);
            (new.secret.clone(), lifetime)
        }
    };
    let mut response = super::error::json(
        StatusCode::OK,
        &serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": expires_in,
        }),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The `n` query parameter of a paged list, if given.
fn page_size(ctx: &Ctx<'_>, params: &[(String, String)]) -> Result<Option<usize>> {
    param(params, "n")
        .map(|n| {
            n.parse::<usize>().map_err(|_| {
                ctx.fail(
                    OciError::new(OciCode::Unsupported, "n must be a non-negative integer")
                        .with_status(400),
                )
            })
        })
        .transpose()
}

/// `GET /v2/<ns>/<name>/tags/list?n=&last=`.
pub(super) async fn tags(
    State(state): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result {
    let ctx = Ctx { state: &state };
    let caller = ctx.caller(&headers).await?;
    let params = query(raw.as_deref());
    let n = page_size(&ctx, &params)?;
    let repository = repository(&ns, &name);
    // Authorised before the mirror may ask its upstream anything.
    ctx.err(
        state
            .registry
            .oci_authorize_read(caller.as_ref(), &repository),
    )?;
    pull_through(&state, &ns, &name, None).await;
    let last = param(&params, "last");
    let page = ctx.err(
        state
            .registry
            .oci_tags(
                caller.as_ref(),
                &repository,
                n.map(|n| n.min(MAX_TAGS_PAGE)),
                last,
            )
            .await,
    )?;
    let mut response = super::error::json(
        StatusCode::OK,
        &serde_json::json!({ "name": page.name, "tags": page.tags }),
    );
    if let Some(next) = &page.next {
        let n = n.unwrap_or(MAX_TAGS_PAGE).min(MAX_TAGS_PAGE);
        let link = format!("</v2/{repository}/tags/list?n={n}&last={next}>; rel=\"next\"");
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

/// `GET|HEAD /v2/<ns>/<name>/manifests/<reference>`.
pub(super) async fn get_manifest(
    State(state): State<AppState>,
    Path((ns, name, reference)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result {
    let ctx = Ctx { state: &state };
    let caller = ctx.caller(&headers).await?;
    // Authorised before the mirror may ask its upstream anything.
    ctx.err(
        state
            .registry
            .oci_authorize_read(caller.as_ref(), &repository(&ns, &name)),
    )?;
    pull_through(&state, &ns, &name, Some(&reference)).await;
    let manifest = ctx.err(
        state
            .registry
            .oci_get_manifest(caller.as_ref(), &repository(&ns, &name), &reference)
            .await,
    )?;
    let digest = answered_digest(&reference, &manifest.digest);
    let mut out = vec![
        (header::CONTENT_TYPE, manifest.media_type),
        (header::CONTENT_LENGTH, manifest.bytes.len().to_string()),
        (header::ETAG, format!("\"{digest}\"")),
        (CONTENT_DIGEST, digest),
    ];
    // The log record that made the manifest visible under this reference,
    // and where its inclusion receipt is (docs/oci.md, "Receipts").
    if let Some(record) = manifest.record {
        let (log, id) = (record.log_id, record.record_id);
        out.push((CAIRN_RECORD, format!("{log}/{id}")));
        out.push((
            header::LINK,
            format!("</receipt/{log}/{id}>; rel=\"receipt\""),
        ));
    }
    Ok(with_headers(StatusCode::OK, out, manifest.bytes))
}

/// How long a manifest body may take to arrive (the ordinary request
/// timeout): set on the manifest routes by the router.
#[derive(Clone, Copy, Debug)]
pub(super) struct ManifestBodyDeadline(pub(super) std::time::Duration);

fn manifest_too_large() -> OciError {
    OciError::new(
        OciCode::SizeInvalid,
        format!("manifests are limited to {MAX_MANIFEST_BYTES} bytes"),
    )
    .with_status(413)
}

/// Reads and drops up to `limit` bytes of `body`.
async fn discard(body: Body, limit: u64) {
    use futures_util::StreamExt as _;
    let mut stream = body.into_data_stream();
    let mut read = 0u64;
    while read < limit {
        match stream.next().await {
            Some(Ok(chunk)) => read += chunk.len() as u64,
            _ => break,
        }
    }
}

/// `PUT /v2/<ns>/<name>/manifests/<reference>`. Push rights and a push slot
/// of the caller come before the body is read, and the body has its own
/// deadline: nobody can make the server wait for a manifest it would refuse,
/// nor hold a push open with a body that never ends.
pub(super) async fn put_manifest(
    State(state): State<AppState>,
    Path((ns, name, reference)): Path<(String, String, String)>,
    axum::Extension(deadline): axum::Extension<ManifestBodyDeadline>,
    headers: HeaderMap,
    body: Body,
) -> Result {
    let ctx = Ctx { state: &state };
    let caller = ctx.caller(&headers).await?;
    let repository = repository(&ns, &name);
    ctx.err(
        state
            .registry
            .oci_authorize_push(caller.as_ref(), &repository),
    )?;
    let _slot = match &caller {
        Some(caller) => Some(ctx.err(state.registry.oci_manifest_push_slot(caller))?),
        None => None,
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_MANIFEST_BYTES as u64) {
        // Refused without keeping it. The bytes are still read, up to
        // the limit and within the body's deadline, and discarded.
        // Otherwise a client still writing the body meets a closed
        // connection instead of this answer.
        let _ =
            tokio::time::timeout(deadline.0, discard(body, MAX_MANIFEST_BYTES as u64 + 1)).await;
        return Err(ctx.fail(manifest_too_large()));
    }
    let body: Bytes = match tokio::time::timeout(
        deadline.0,
        axum::body::to_bytes(body, MAX_MANIFEST_BYTES + 1),
    )
    .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => return Err(ctx.fail(manifest_too_large())),
        Err(_) => {
            return Err(ctx.fail(
                OciError::new(
                    OciCode::ManifestInvalid,
                    format!(
                        "the manifest did not arrive within {} s",
                        deadline.0.as_secs()
                    ),
                )
                .with_status(408),
            ));
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let pushed = ctx.err(
        state
            .registry
            .oci_put_manifest(caller.as_ref(), &repository, &reference, content_type, body)
            .await,
    )?;
    let digest = answered_digest(&reference, &pushed.digest);
    let mut out = vec![
        (
            header::LOCATION,
            format!("/v2/{repository}/manifests/{digest}"),
        ),
        (CONTENT_DIGEST, digest),
        (header::CONTENT_LENGTH, "0".into()),
    ];
    if let Some(subject) = pushed.subject {
        // SPEC: OCI distribution-spec 1.1 — a registry with the referrers
        // API MUST answer a push with a subject with OCI-Subject.
        out.push((OCI_SUBJECT, subject.to_string()));
    }
    Ok(with_headers(StatusCode::CREATED, out, Body::empty()))
}

/// `DELETE /v2/<ns>/<name>/manifests/<reference>`: a mutable tag, or a
/// manifest that is not a release (releases are never deleted: 405). `202`
/// once the record logging the deletion is covered by a checkpoint.
pub(super) async fn delete_manifest(
    State(state): State<AppState>,
    Path((ns, name, reference)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result {
    let ctx = Ctx { state: &state };
    let caller = ctx.caller(&headers).await?;
    ctx.err(
        state
            .registry
            .oci_delete_manifest(caller.as_ref(), &repository(&ns, &name), &reference)
            .await,
    )?;
    Ok(with_headers(
        StatusCode::ACCEPTED,
        vec![(header::CONTENT_LENGTH, "0".into())],
        Body::empty(),
    ))
}

/// `DELETE /v2/<ns>/<name>/blobs/<digest>`: never over HTTP (once push
/// rights are checked, 405). Blobs nothing references are removed by
/// `cairn gc`.
pub(super) async fn delete_blob(
    State(state): State<AppState>,
    Path((ns, name, _digest)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result {
    let ctx = Ctx { state: &state };
    let caller = ctx.caller(&headers).await?;
    ctx.err(
        state
            .registry
            .oci_authorize_push(caller.as_ref(), &repository(&ns, &name)),
    )?;
    Err(ctx.fail(OciError::new(
        OciCode::Unsupported,
        "blobs are not deleted over the API: delete the manifests that reference them; \
         the operator's `cairn gc` removes blobs that nothing references",
    )))
}

/// The digest a manifest answer names: the SHA-512 the request named it
/// by, else its SHA-256.
fn answered_digest(reference: &str, digest: &cairn_crypto::Sha256Digest) -> String {
    match Reference::parse(reference) {
        Ok(Reference::Sha512(name)) => name.to_string(),
        _ => digest.to_string(),
    }
}

/// Withheld content (`cairn content withhold`): 451 with the logged reason.
/// Asked once the caller may read the repository (`size` is not a 401 or
/// 403), also when `cairn gc` has deleted the bytes (`BLOB_UNKNOWN`). A
/// blob named by SHA-512 is checked by the SHA-256 it is an alias of.
async fn refuse_withheld(
    ctx: &Ctx<'_>,
    digest: &str,
    size: &std::result::Result<u64, OciError>,
) -> Result<()> {
    let readable = match size {
        Ok(_) => true,
        Err(error) => error.code == OciCode::BlobUnknown,
    };
    if readable && let Some(digest) = ctx.err(ctx.state.registry.oci_blob_sha256(digest).await)? {
        let refused = ctx.state.registry.refuse_withheld(&digest);
        ctx.err(refused.map_err(OciError::from))?;
    }
    Ok(())
}

/// `HEAD /v2/<ns>/<name>/blobs/<digest>`.
pub(super) async fn head_blob(
    State(state): State<AppState>,
    Path((ns, name, digest)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result {
    let ctx = Ctx { state: &state };
    let caller = ctx.caller(&headers).await?;
    let size = state
        .registry
        .oci_blob_size(caller.as_ref(), &repository(&ns, &name), &digest)
        .await;
    refuse_withheld(&ctx, &digest, &size).await?;
    let size = ctx.err(size)?;
    let held = state
        .registry
        .oci_refuse_held_blob(caller.as_ref(), &repository(&ns, &name), &digest)
        .await;
    ctx.err(held)?;
    Ok(with_headers(
        StatusCode::OK,
        vec![
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_TYPE, "application/octet-stream".into()),
            (header::ACCEPT_RANGES, "bytes".into()),
            (CONTENT_DIGEST, digest),
        ],
        Body::empty(),
    ))
}

/// `GET /v2/<ns>/<name>/blobs/<digest>`, with `Range`.
pub(super) async fn get_blob(
    State(state): State<AppState>,
    Path((ns, name, digest)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result {
    let ctx = Ctx { state: &state };
    let caller = ctx.caller(&headers).await?;
    let repository = repository(&ns, &name);
    let size = state
        .registry
        .oci_blob_size(caller.as_ref(), &repository, &digest)
        .await;
    refuse_withheld(&ctx, &digest, &size).await?;
    let size = ctx.err(size)?;
    let held = state
        .registry
        .oci_refuse_held_blob(caller.as_ref(), &repository, &digest)
        .await;
    ctx.err(held)?;
    // `--blob-redirect`: the authorised caller fetches the bytes from the
    // blob store (a short-lived presigned URL), as CNCF distribution does.
    if let Some(url) = ctx.err(state.registry.oci_blob_redirect(&digest).await)? {
        return Ok(with_headers(
            StatusCode::TEMPORARY_REDIRECT,
            vec![
                (header::LOCATION, url),
                (header::CACHE_CONTROL, "no-store".into()),
                (CONTENT_DIGEST, digest),
            ],
            Body::empty(),
        ));
    }
    let range = match parse_range(headers.get(header::RANGE), size) {
        // SPEC: RFC 9110 §14.1.1 — a range whose last position is before
        // its first is invalid: refused with a 416, as the OCI conformance
        // suite expects, rather than ignored.
        Range::Full if inverted_range(headers.get(header::RANGE)) => Range::Unsatisfiable,
        range => range,
    };
    let (status, offset, len) = match range {
        Range::Full => (StatusCode::OK, 0, size),
        Range::Part(start, end) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Range::Unsatisfiable => {
            return Ok(with_headers(
                StatusCode::RANGE_NOT_SATISFIABLE,
                vec![(header::CONTENT_RANGE, format!("bytes */{size}"))],
                Body::empty(),
            ));
        }
    };
    let download = ctx.err(
        state
            .registry
            .oci_read_blob(&repository, &digest, offset, len)
            .await,
    )?;
    let mut out = vec![
        (header::CONTENT_LENGTH, len.to_string()),
        (header::CONTENT_TYPE, "application/octet-stream".into()),
        (header::ACCEPT_RANGES, "bytes".into()),
        (header::ETAG, format!("\"{digest}\"")),
        (
            header::CACHE_CONTROL,
            "private, max-age=31536000, immutable".into(),
        ),
        (CONTENT_DIGEST, digest),
    ];
    if status == StatusCode::PARTIAL_CONTENT {
        out.push((
            header::CONTENT_RANGE,
            format!("bytes {offset}-{}/{size}", offset + len - 1),
        ));
    }
    Ok(with_headers(status, out, Body::from_stream(download.body)))
}

/// Whether `Range` is one `bytes=<first>-<last>` with `last` < `first`.
fn inverted_range(value: Option<&HeaderValue>) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.trim().split_once('-'))
        .and_then(|(first, last)| Some((first.parse::<u64>().ok()?, last.parse::<u64>().ok()?)))
        .is_some_and(|(first, last)| last < first)
}

/// `POST /v2/<ns>/<name>/blobs/uploads/[?digest=|?mount=&from=]`.
pub(super) async fn start_upload(
    State(state): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result {
    let ctx = Ctx { state: &state };
    let caller = ctx.caller(&headers).await?;
    let params = query(raw.as_deref());
    let start = if let Some(mount) = param(&params, "mount") {
        UploadStart::Mount {
            digest: ctx.err(parse_oci_digest(mount))?,
            from: param(&params, "from").map(str::to_owned),
        }
    } else if let Some(digest) = param(&params, "digest") {
        UploadStart::Monolithic(ctx.err(parse_oci_digest(digest))?)
    } else {
        UploadStart::Session
    };
    let repository = repository(&ns, &name);
    let started = ctx.err(
        state
            .registry
            .oci_start_upload(caller.as_ref(), &repository, start, body_stream(body))
            .await,
    )?;
    Ok(match started {
        StartedUpload::Session { id } => with_headers(
            StatusCode::ACCEPTED,
            upload_headers(&repository, &id, 0),
            Body::empty(),
        ),
        StartedUpload::Complete { digest } => blob_created(&repository, &digest.to_string()),
    })
}

/// `GET /v2/<ns>/<name>/blobs/uploads/<id>`: how much has arrived.
pub(super) async fn upload_status(
    State(state): State<AppState>,
    Path((ns, name, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result {
    let ctx = Ctx { state: &state };
    let caller = ctx.caller(&headers).await?;
    let repository = repository(&ns, &name);
    let size = ctx.err(
        state
            .registry
            .oci_upload_size(caller.as_ref(), &repository, &id)
            .await,
    )?;
    Ok(with_headers(
        StatusCode::NO_CONTENT,
        upload_headers(&repository, &id, size),
        Body::empty(),
    ))
}

/// The first byte of a `Content-Range: <start>-<end>` (also accepted:
/// `bytes <start>-<end>/<size>`). Malformed ranges are a 416.
fn content_range_start(headers: &HeaderMap) -> std::result::Result<Option<u64>, OciError> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        OciError::new(
            OciCode::BlobUploadInvalid,
            "Content-Range must be <start>-<end>",
        )
        .with_status(416)
    };
    let text = value.to_str().map_err(|_| bad())?.trim();
    let text = text.strip_prefix("bytes ").unwrap_or(text);
    let text = text.split('/').next().unwrap_or(text);
    let (start, end) = text.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.trim().parse().map_err(|_| bad())?;
    let end: u64 = end.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok(Some(start))
}

/// `PATCH /v2/<ns>/<name>/blobs/uploads/<id>`: a chunk, in order.
pub(super) async fn upload_chunk(
    State(state): State<AppState>,
    Path((ns, name, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result {
    let ctx = Ctx { state: &state };
    let caller = ctx.caller(&headers).await?;
    let repository = repository(&ns, &name);
    let start = ctx.err(content_range_start(&headers))?;
    let size = append_chunk(&ctx, caller.as_ref(), &repository, &id, start, body).await?;
    Ok(with_headers(
        StatusCode::ACCEPTED,
        upload_headers(&repository, &id, size),
        Body::empty(),
    ))
}

/// Appends a chunk starting at `start` (at the end when `None`) to upload
/// `id`; returns the upload's new size.
async fn append_chunk(
    ctx: &Ctx<'_>,
    caller: Option<&Caller>,
    repository: &str,
    id: &str,
    start: Option<u64>,
    body: Body,
) -> Result<u64> {
    let registry = &ctx.state.registry;
    match registry
        .oci_upload_chunk(caller, repository, id, start, body_stream(body))
        .await
    {
        Ok(size) => Ok(size),
        Err(error) if error.status == 416 => {
            // SPEC: distribution-spec — "If a chunk is uploaded out of
            // order, the registry MUST respond with a `416 Requested Range
            // Not Satisfiable` code"; with the upload's Location and current
            // Range, and the upload goes on.
            let size = registry
                .oci_upload_size(caller, repository, id)
                .await
                .unwrap_or(0);
            let mut response = ctx.fail(error);
            response.headers = upload_headers(repository, id, size);
            response
                .headers
                .retain(|(name, _)| name != header::CONTENT_LENGTH);
            Err(response)
        }
        Err(error) => Err(ctx.fail(error)),
    }
}

/// `PUT /v2/<ns>/<name>/blobs/uploads/<id>?digest=`: the last chunk (if
/// any) and the end of the upload.
pub(super) async fn finish_upload(
    State(state): State<AppState>,
    Path((ns, name, id)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result {
    let ctx = Ctx { state: &state };
    let caller = ctx.caller(&headers).await?;
    let params = query(raw.as_deref());
    let Some(digest) = param(&params, "digest") else {
        return Err(ctx.fail(OciError::new(
            OciCode::DigestInvalid,
            "finishing an upload needs ?digest=sha256:<hex> (or sha512:<hex>)",
        )));
    };
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() != "0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    let repository = repository(&ns, &name);
    let mut last_chunk = has_body.then_some(body);
    if let Some(start) = ctx.err(content_range_start(&headers))?
        && let Some(chunk) = last_chunk.take()
    {
        // A last chunk with its range is appended like a PATCH first: out
        // of order it is a 416, and the upload is still open.
        append_chunk(&ctx, caller.as_ref(), &repository, &id, Some(start), chunk).await?;
    }
    let digest = ctx.err(
        state
            .registry
            .oci_finish_upload(
                caller.as_ref(),
                &repository,
                &id,
                digest,
                last_chunk.map(body_stream),
            )
            .await,
    )?;
    Ok(blob_created(&repository, &digest.to_string()))
}

/// `DELETE /v2/<ns>/<name>/blobs/uploads/<id>`: cancels an upload.
pub(super) async fn cancel_upload(
    State(state): State<AppState>,
    Path((ns, name, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result {
    let ctx = Ctx { state: &state };
    let caller = ctx.caller(&headers).await?;
    ctx.err(
        state
            .registry
            .oci_cancel_upload(caller.as_ref(), &repository(&ns, &name), &id)
            .await,
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v2/<ns>/<name>/referrers/<digest>[?artifactType=&n=&last=]`: a
/// page of at most 1,000 referrers, with a `Link` to the next.
pub(super) async fn referrers(
    State(state): State<AppState>,
    Path((ns, name, digest)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result {
    let ctx = Ctx { state: &state };
    let caller = ctx.caller(&headers).await?;
    let params = query(raw.as_deref());
    let artifact_type = param(&params, "artifactType").filter(|t| !t.is_empty());
    let n = page_size(&ctx, &params)?;
    let repository = repository(&ns, &name);
    let page = ctx.err(
        state
            .registry
            .oci_referrers(
                caller.as_ref(),
                &repository,
                &digest,
                artifact_type,
                n,
                param(&params, "last"),
            )
            .await,
    )?;
    let mut out = vec![
        (header::CONTENT_TYPE, IMAGE_INDEX.to_owned()),
        (header::CONTENT_LENGTH, page.index.len().to_string()),
    ];
    if page.filtered {
        out.push((FILTERS_APPLIED, "artifactType".into()));
    }
    if let Some(next) = page.next {
        // SPEC: distribution-spec 1.1 — a paged referrers answer names the
        // next page in a `Link` header with rel="next".
        let mut link = format!("/v2/{repository}/referrers/{digest}?last={next}");
        if let Some(n) = n {
            link.push_str(&format!("&n={n}"));
        }
        if let Some(artifact_type) = artifact_type {
            link.push_str(&format!("&artifactType={}", percent_encode(artifact_type)));
        }
        out.push((header::LINK, format!("<{link}>; rel=\"next\"")));
    }
    Ok(with_headers(StatusCode::OK, out, page.index))
}

/// Percent-encodes what is not unreserved (RFC 3986), for query values.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A method an OCI endpoint does not have.
pub(super) async fn method_not_allowed(State(state): State<AppState>) -> Response {
    Ctx { state: &state }
        .fail(OciError::new(
            OciCode::Unsupported,
            "this endpoint does not support that method",
        ))
        .into_response()
}

/// Anything else under `/v2/`: a repository name this registry does not
/// have (`<namespace>/<name>` only), or an unknown endpoint.
pub(super) async fn fallback(
    State(state): State<AppState>,
    method: Method,
    uri: axum::http::Uri,
) -> Response {
    let ctx = Ctx { state: &state };
    let path = uri.path().strip_prefix("/v2/").unwrap_or("");
    let known = ["/manifests/", "/blobs/", "/tags/list", "/referrers/"];
    let error = if known.iter().any(|k| path.contains(k)) {
        OciError::new(
            OciCode::NameInvalid,
            "repositories of this registry are <namespace>/<name>, e.g. my-org/my-component",
        )
    } else if method == Method::GET || method == Method::HEAD {
        OciError::new(
            OciCode::Unsupported,
            format!("no such endpoint: {}", uri.path()),
        )
        .with_status(404)
    } else {
        OciError::new(
            OciCode::Unsupported,
            format!("no such endpoint: {}", uri.path()),
        )
    };
    ctx.fail(error).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_decoded_and_keep_plus() {
        let q = query(Some(
            "digest=sha256%3Aab&from=a%2Fb&artifactType=application/vnd.x+json&n=",
        ));
        assert_eq!(param(&q, "digest"), Some("sha256:ab"));
        assert_eq!(param(&q, "from"), Some("a/b"));
        assert_eq!(param(&q, "artifactType"), Some("application/vnd.x+json"));
        assert_eq!(param(&q, "n"), Some(""));
        assert_eq!(param(&q, "last"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn content_ranges() {
        let h = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_RANGE, v.parse().unwrap());
            h
        };
        assert_eq!(content_range_start(&HeaderMap::new()), Ok(None));
        assert_eq!(content_range_start(&h("0-99")), Ok(Some(0)));
        assert_eq!(content_range_start(&h("bytes 100-199/*")), Ok(Some(100)));
        for bad in ["x", "5-1", "-1", "1-"] {
            assert_eq!(
                content_range_start(&h(bad)).unwrap_err().status,
                416,
                "{bad}"
            );
        }
    }

    #[test]
    fn inverted_ranges() {
        let h = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(inverted_range(Some(&h("bytes=500-0"))));
        for fine in [
            "bytes=0-500",
            "bytes=500-",
            "bytes=-500",
            "bytes=5-5",
            "x=5-1",
        ] {
            assert!(!inverted_range(Some(&h(fine))), "{fine}");
        }
        assert!(!inverted_range(None));
    }

    #[test]
    fn challenges_name_the_realm_and_scope() {
        assert_eq!(
            challenge("http://r/v2/token", Some("repository:a/b:pull,push")),
            "Bearer realm=\"http://r/v2/token\",service=\"cairn\",scope=\"repository:a/b:pull,push\""
        );
    }
}
