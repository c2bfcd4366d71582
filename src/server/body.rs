//! Reading a webhook body: within `limits.max_body` (413 when larger, announced or not), within
//! `limits.body_timeout` in all, and no slower than `limits.min_body_rate` on average after
//! [`GRACE`] (408 when the sender falls behind), so a trickling sender holds its connection for
//! about a second, not for the whole body timeout.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::config::Limits;

/// How long a body may take to get going before the rate counts: a sender's first packet can
/// wait on a TCP handshake's worth of round trips, on a slow link hundreds of milliseconds.
pub const GRACE: Duration = Duration::from_secs(1);

/// When the body started at `start` must have delivered more than `received` bytes: after the
/// grace, `received / rate` seconds more; never later than the body timeout.
pub fn due(start: Instant, received: usize, limits: &Limits) -> Instant {
    let rate = limits.min_body_rate.max(1) as f64;
    let owed = Duration::try_from_secs_f64(received as f64 / rate).unwrap_or(Duration::MAX);
    let hard = start + limits.body_timeout;
    start
        .checked_add(GRACE.saturating_add(owed))
        .map_or(hard, |t| t.min(hard))
}

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// Larger than `limits.max_body`, announced or not.
    TooLarge,
    /// Behind the minimum rate, or past the body timeout.
    TooSlow,
    /// The stream broke.
    Broken,
}

impl Unread {
    /// The answer's status and message.
    pub fn answer(self) -> (StatusCode, &'static str) {
        match self {
            Unread::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
            Unread::TooSlow => (StatusCode::REQUEST_TIMEOUT, "body not received in time"),
            Unread::Broken => (StatusCode::BAD_REQUEST, "body could not be read"),
        }
    }
}

/// Reads the whole body (see the module doc).
pub async fn read(limits: &Limits, headers: &HeaderMap, body: Body) -> Result<Bytes, Unread> {
    let max = limits.max_body;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return Err(Unread::TooLarge);
    }
    let start = Instant::now();
    let mut body = body;
    // One frame (a delivery in one packet) is passed on as it is; more are joined.
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let mut received = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(due(start, received, limits), body.frame()).await
        {
            Err(_) => return Err(Unread::TooSlow),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(Unread::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        received = received.saturating_add(data.len());
        if received > max {
            return Err(Unread::TooLarge);
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            earlier => {
                if let Some(earlier) = earlier {
                    joined.reserve(announced.map_or(0, |n| n as usize).max(received));
                    joined.extend_from_slice(&earlier);
                }
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_owes_its_bytes_at_the_minimum_rate_after_the_grace() {
        let limits = Limits {
            min_body_rate: 1000,
            body_timeout: Duration::from_secs(30),
            ..Limits::default()
        };
        let start = Instant::now();
        assert_eq!(due(start, 0, &limits), start + GRACE);
        assert_eq!(
            due(start, 2000, &limits),
            start + GRACE + Duration::from_secs(2)
        );
        // Never past the body timeout, however much arrived.
        assert_eq!(due(start, 10_000_000, &limits), start + limits.body_timeout);
        let fast = Limits {
            min_body_rate: 1024 * 1024 * 1024,
            ..limits.clone()
        };
        assert!(due(start, 1, &fast) < start + GRACE + Duration::from_micros(1));
        let short = Limits {
            body_timeout: Duration::from_millis(10),
            ..limits
        };
        assert_eq!(due(start, 0, &short), start + Duration::from_millis(10));
    }
}
