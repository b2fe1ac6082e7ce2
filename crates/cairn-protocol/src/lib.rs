//! The warg protocol, as cairn speaks it.
//!
//! * [`record`]: operator and package records (protobuf), decoded into
//!   typed models with typed errors; [`envelope`]: signed envelopes that keep
//!   the received bytes exactly;
//! * [`ids`]: `LogId` / `RecordId` derivation; [`name`]: package-name and
//!   namespace rules;
//! * [`operator`] and [`package`]: the validation state machines, every rule
//!   of the reference (warg-wire §5);
//! * [`wire`]: the JSON types of every warg v1 endpoint.
//!
//! Like the other core crates it does **no I/O**; time never comes from the
//! clock (records carry their own timestamps).
//!
//! cairn is deliberately stricter than the reference in a few places, each a
//! case where the reference accepts input that no honest client produces and
//! that could break later readers: digests must have exactly 32 bytes,
//! record timestamps must lie between 1970 and 9999, and names are limited in
//! length ([`name::MAX_NAMESPACE_LEN`], [`name::MAX_PACKAGE_NAME_LEN`]).

pub mod envelope;
mod error;
pub mod ext;
pub mod ids;
mod keys;
pub mod name;
pub mod oci;
pub mod operator;
pub mod package;
pub mod proto;
pub mod record;
pub mod replay;
pub mod timestamp;
pub mod wire;

pub use envelope::Envelope;
pub use error::{DecodeError, ValidationError};
pub use ids::{LogId, RecordId};
pub use name::PackageName;
pub use timestamp::Timestamp;
