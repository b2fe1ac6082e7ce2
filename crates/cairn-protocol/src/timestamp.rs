//! Record timestamps.

use std::cmp::Ordering;
use std::fmt;

use crate::DecodeError;
use crate::proto;

/// The latest timestamp cairn accepts: 9999-12-31T23:59:59Z.
pub const MAX_SECONDS: i64 = 253_402_300_799;
const NANOS_PER_SECOND: i32 = 1_000_000_000;

/// A record timestamp: seconds and nanoseconds since the Unix epoch,
/// normalised exactly as the reference normalises protobuf timestamps.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z (0 ..= [`MAX_SECONDS`]).
    pub seconds: i64,
    /// Nanoseconds (0 ..= 999,999,999).
    pub nanos: u32,
}

impl Timestamp {
    /// Converts a protobuf timestamp.
    ///
    /// Normalisation follows prost-types `Timestamp::normalize` (nanos carry
    /// into seconds); then cairn requires 1970 ≤ t ≤ 9999.
    pub fn from_proto(ts: proto::Timestamp) -> Result<Self, DecodeError> {
        let (mut seconds, mut nanos) = (ts.seconds, ts.nanos);
        if nanos <= -NANOS_PER_SECOND || nanos >= NANOS_PER_SECOND {
            match seconds.checked_add(i64::from(nanos / NANOS_PER_SECOND)) {
                Some(s) => {
                    seconds = s;
                    nanos %= NANOS_PER_SECOND;
                }
                None => return Err(DecodeError::TimestampOutOfRange),
            }
        }
        if nanos < 0 {
            seconds = seconds
                .checked_sub(1)
                .ok_or(DecodeError::TimestampOutOfRange)?;
            nanos += NANOS_PER_SECOND;
        }
        if !(0..=MAX_SECONDS).contains(&seconds) {
            return Err(DecodeError::TimestampOutOfRange);
        }
        let nanos = u32::try_from(nanos).map_err(|_| DecodeError::TimestampOutOfRange)?;
        Ok(Self { seconds, nanos })
    }

    /// The protobuf form.
    pub fn to_proto(&self) -> proto::Timestamp {
        proto::Timestamp {
            seconds: self.seconds,
            // nanos < 1e9 always fits.
            nanos: i32::try_from(self.nanos).unwrap_or(NANOS_PER_SECOND - 1),
        }
    }

    /// Builds a timestamp from Unix seconds and nanoseconds (callers pass the
    /// current time; this crate never reads the clock).
    pub fn from_unix(seconds: u64, nanos: u32) -> Result<Self, DecodeError> {
        let seconds = i64::try_from(seconds).map_err(|_| DecodeError::TimestampOutOfRange)?;
        Self::from_proto(proto::Timestamp {
            seconds,
            nanos: i32::try_from(nanos).map_err(|_| DecodeError::TimestampOutOfRange)?,
        })
    }
}

impl Ord for Timestamp {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.seconds, self.nanos).cmp(&(other.seconds, other.nanos))
    }
}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09}", self.seconds, self.nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(seconds: i64, nanos: i32) -> Result<Timestamp, DecodeError> {
        Timestamp::from_proto(proto::Timestamp { seconds, nanos })
    }

    #[test]
    fn normalises_like_prost() {
        assert_eq!(
            ts(5, 1_500_000_000).unwrap(),
            Timestamp {
                seconds: 6,
                nanos: 500_000_000
            }
        );
        assert_eq!(
            ts(5, -1).unwrap(),
            Timestamp {
                seconds: 4,
                nanos: 999_999_999
            }
        );
        assert_eq!(
            ts(5, -1_000_000_001).unwrap(),
            Timestamp {
                seconds: 3,
                nanos: 999_999_999
            }
        );
    }

    #[test]
    fn out_of_range_is_an_error() {
        assert_eq!(ts(-1, 0), Err(DecodeError::TimestampOutOfRange));
        assert_eq!(ts(0, -1), Err(DecodeError::TimestampOutOfRange));
        assert_eq!(
            ts(MAX_SECONDS + 1, 0),
            Err(DecodeError::TimestampOutOfRange)
        );
        assert_eq!(
            ts(i64::MAX, i32::MAX),
            Err(DecodeError::TimestampOutOfRange)
        );
        assert_eq!(ts(i64::MIN, -1), Err(DecodeError::TimestampOutOfRange));
    }
}
