//! Exports of any size: a file written a page at a time while it is sent, and the `Accept`
//! header that asks for one.

use crate::storage::StorageError;
use axum::body::Body;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::future::Future;

/// Whether the caller's `Accept` names `media_type`. Anything else (no header, `*/*`, a type
/// hearback does not write) gets the JSON page, as every listing does.
pub(crate) fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains(media_type))
}

/// One page of an export: its bytes, and the cursor of the page after it (`None`: the last).
pub(crate) type Page = Option<(Vec<u8>, Option<String>)>;

/// A download of `head` then every page `read(cursor)` returns, each read when the client has
/// taken the one before: memory stays the same whatever the number of rows, and no transaction
/// lasts longer than one page's query. A database error mid-way ends the file early (the
/// response has begun, its status cannot change); it is logged with `what`.
pub(crate) fn paged_download<F, Fut>(
    content_type: &'static str,
    file_name: &'static str,
    what: &'static str,
    head: Vec<u8>,
    cursor: Option<String>,
    read: F,
) -> Response
where
    F: FnMut(Option<String>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Page, StorageError>> + Send + 'static,
{
    let pages = futures::stream::unfold(Some((read, cursor)), move |state| async move {
        let (mut read, cursor) = state?;
        match read(cursor).await {
            Ok(None) => None,
            Ok(Some((bytes, next))) => Some((
                Ok::<_, std::io::Error>(bytes),
                next.map(|next| (read, Some(next))),
            )),
            Err(e) => {
                tracing::error!(error = %e, export = what, "an export stopped");
                Some((Err(std::io::Error::other(e.to_string())), None))
            }
        }
    });
    let body = futures::stream::once(async move { Ok(head) }).chain(pages);
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Records as CSV lines, through one writer.
pub(crate) fn csv_lines<R, C>(records: impl IntoIterator<Item = R>) -> Vec<u8>
where
    R: IntoIterator<Item = C>,
    C: AsRef<[u8]>,
{
    let mut writer = csv::Writer::from_writer(Vec::new());
    for cells in records {
        writer
            .write_record(cells)
            .expect("writing to memory cannot fail");
    }
    writer.into_inner().expect("writing to memory cannot fail")
}
