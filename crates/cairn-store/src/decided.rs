//! [`DecidedStore`]: pending records stored only if the logs they were
//! decided on have not moved — the database's half of the commit gate.
//!
//! A record is validated (decided) against the state of some logs — its
//! own package log, the operator log (is the namespace defined?), the
//! registry log (is the key bound?), a metadata log — read from the store
//! or a cache, possibly on another node than the sequencer's. Between that
//! read and the insert the sequencer may commit a batch that moves one of
//! those logs. An insert through this trait carries the heads it was
//! decided on ([`ExpectedHead`]) and the store checks them **in the
//! inserting transaction**, ordered against every batch commit:
//!
//! * on PostgreSQL the inserting transaction holds a transaction-scoped
//!   advisory lock *shared*, and [`crate::Store::commit_batch`] holds the
//!   same lock *exclusively* from its first statement to its commit; so an
//!   insert either sees everything a batch committed or finishes before the
//!   batch begins (and the batch then sees the pending row);
//! * on SQLite every write runs on the one writer connection, which orders
//!   them the same way.
//!
//! Together with the uniqueness of live pending records per log (the
//! `pending_live_per_log` index), a record accepted through this trait is
//! sequenced on exactly the state it was decided on, whichever node
//! accepted it. The other half is in the batch: a record the sequencer
//! builds itself on a log's head (an OCI push) is refused at commit when a
//! live pending record of another writer exists for that log
//! ([`StoreError::Moved`]), since that record was decided on the same head.
//!
//! This module decides nothing about records: it compares heads.

use async_trait::async_trait;
use cairn_protocol::{LogId, RecordId};

use crate::{NewPending, PendingRecord, StoreResult};

/// The head a log had when a write was decided on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectedHead {
    /// The log.
    pub log_id: LogId,
    /// Its head record then; `None` for a log without records.
    pub head: Option<RecordId>,
}

impl ExpectedHead {
    /// `log_id` was read with head `head`.
    pub fn new(log_id: LogId, head: Option<RecordId>) -> Self {
        Self { log_id, head }
    }
}

/// Inserting pending records decided on known heads.
///
/// # Contract
///
/// * [`DecidedStore::insert_pending_decided`] stores `records` (of
///   different logs, in this order, all or none) only if, in the same
///   transaction, every log of `decided_on` has exactly the expected head
///   (a log without a row has head `None`); otherwise it fails with
///   [`crate::StoreError::Moved`] and stores nothing. A live pending record
///   already on one of the records' logs, or the same record again, fails
///   with [`crate::StoreError::Conflict`] (checked after the heads).
/// * **Ordering.** The check and the insert are atomic with respect to
///   [`crate::Store::commit_batch`]: no batch commits between them. A batch
///   that committed before sees its effects in the check; a batch that
///   commits after sees the inserted rows.
/// * [`crate::PendingStore::insert_pending`] and
///   [`crate::PendingStore::insert_pending_many`] are this with no heads
///   (they are ordered against batches the same way).
#[async_trait]
pub trait DecidedStore: Send + Sync {
    /// Stores `records` if the logs of `decided_on` still have the expected
    /// heads (see the contract).
    async fn insert_pending_decided(
        &self,
        records: &[NewPending],
        decided_on: &[ExpectedHead],
    ) -> StoreResult<Vec<PendingRecord>>;
}
