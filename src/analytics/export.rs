//! Streamed export of stored requests or security events as a JSON array or CSV.
//!
//! The stream pulls one keyset page (`PAGE` rows, oldest first) at a time and yields it as one
//! encoded chunk, so memory stays at one page whatever the range; the HTTP body is fed from this
//! stream. Trade-off: an error after the first chunk can only end the body early (the status
//! line is already sent); the client sees a truncated document, never a silently short one
//! with a valid ending.

use bytes::Bytes;
use futures_util::Stream;
use serde::Serialize;

use crate::store::{Cursor, ExportKind, Page, RequestFilter, SecurityFilter, Store};

use super::Error;

/// Rows per chunk.
pub const PAGE: u32 = 1_000;

/// Output encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Json,
    Csv,
}

impl ExportFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Json => "application/json",
            ExportFormat::Csv => "text/csv; charset=utf-8",
        }
    }
}

struct State {
    store: Store,
    kind: ExportKind,
    format: ExportFormat,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    cursor: Option<Cursor>,
    first: bool,
    done: bool,
}

/// The export of `kind` rows in `[since_ms, until_ms)` as a stream of encoded chunks.
pub fn export(
    store: Store,
    kind: ExportKind,
    format: ExportFormat,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
) -> impl Stream<Item = Result<Bytes, Error>> + Send + 'static {
    let state = State {
        store,
        kind,
        format,
        since_ms,
        until_ms,
        cursor: None,
        first: true,
        done: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let chunk = next_chunk(&mut st).await;
        if chunk.is_err() {
            st.done = true;
        }
        Some((chunk, st))
    })
}

async fn next_chunk(st: &mut State) -> Result<Bytes, Error> {
    let chunk = match st.kind {
        ExportKind::Requests => {
            let f = RequestFilter {
                since_ms: st.since_ms,
                until_ms: st.until_ms,
                oldest_first: true,
                ..RequestFilter::default()
            };
            let page = st.store.requests(&f, st.cursor, PAGE).await?;
            encode_page(st, page)?
        }
        ExportKind::Security => {
            let f = SecurityFilter {
                since_ms: st.since_ms,
                until_ms: st.until_ms,
                oldest_first: true,
                ..SecurityFilter::default()
            };
            let page = st.store.security_events(&f, st.cursor, PAGE).await?;
            encode_page(st, page)?
        }
    };
    Ok(chunk)
}

fn encode_page<T: Serialize + Default>(st: &mut State, page: Page<T>) -> Result<Bytes, Error> {
    let last = page.next_cursor.is_none();
    st.cursor = page.next_cursor.as_deref().and_then(Cursor::parse);
    let out = match st.format {
        ExportFormat::Json => json_chunk(&page.items, st.first, last),
        ExportFormat::Csv => csv_chunk(&page.items, st.first),
    }?;
    st.first = false;
    st.done = last;
    Ok(Bytes::from(out))
}

fn json_chunk<T: Serialize>(rows: &[T], first: bool, last: bool) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(rows.len() * 512 + 4);
    if first {
        out.push(b'[');
    }
    for (i, row) in rows.iter().enumerate() {
        if !(first && i == 0) {
            out.push(b',');
        }
        out.push(b'\n');
        serde_json::to_writer(&mut out, row).map_err(|e| Error::Encode(e.into()))?;
    }
    if last {
        out.extend_from_slice(b"\n]\n");
    }
    Ok(out)
}

fn csv_chunk<T: Serialize + Default>(rows: &[T], first: bool) -> Result<Vec<u8>, Error> {
    let enc = |e: csv::Error| Error::Encode(e.into());
    if rows.is_empty() {
        if !first {
            return Ok(Vec::new());
        }
        // An empty export still gets its header line: encode a default row, keep the header.
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(T::default()).map_err(enc)?;
        let all = w
            .into_inner()
            .map_err(|e| Error::Encode(e.into_error().into()))?;
        let end = all
            .iter()
            .position(|b| *b == b'\n')
            .map_or(all.len(), |i| i + 1);
        return Ok(all[..end].to_vec());
    }
    let mut w = csv::WriterBuilder::new()
        .has_headers(first)
        .from_writer(Vec::with_capacity(rows.len() * 256));
    for row in rows {
        w.serialize(row).map_err(enc)?;
    }
    w.into_inner()
        .map_err(|e| Error::Encode(e.into_error().into()))
}
