//! STOMP transactions (BEGIN / COMMIT / ABORT), held in memory.
//!
//! A SEND, ACK or NACK that names a `transaction` is buffered here instead of taking effect;
//! COMMIT hands the buffered operations back, in order, for the session to carry out (so the
//! [`diglot_core::Action::Ack`] / [`diglot_core::Action::Nack`] of a transactional ACK or NACK
//! of a durable delivery is pushed only at COMMIT, in order with the SENDs), and
//! ABORT discards them (STOMP 1.2 "BEGIN", "COMMIT", "ABORT"). A disconnect aborts every open
//! transaction.
//!
//! What a client may make the broker hold is bounded: at most [`MAX_OPEN`] open transactions,
//! [`MAX_OPS`] buffered operations and `max_frame_bytes × 16` buffered bytes per connection.
//! Transactions are not durable: a commit is atomic only in that nothing is routed before it.

use std::collections::HashMap;

use diglot_core::Message;

use super::subs::{Target, Verdict};

/// Most open transactions per connection.
pub(crate) const MAX_OPEN: usize = 64;
/// Most buffered operations per connection, across its open transactions.
pub(crate) const MAX_OPS: usize = 4096;
/// How many frames' worth of bytes a connection's transactions may buffer.
pub(crate) const BYTES_PER_FRAME_LIMIT: usize = 16;

/// One buffered operation.
#[derive(Debug)]
pub(crate) enum TxOp {
    /// A SEND, already validated and turned into a message.
    Publish(Message),
    /// An ACK or NACK of these deliveries.
    Settle(Vec<Target>, Verdict),
}

/// Why a transaction operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TxError {
    /// BEGIN with a name that is already open.
    Duplicate,
    /// COMMIT, ABORT or a transactional frame naming no open transaction.
    Unknown,
    /// Too many open transactions.
    TooManyOpen,
    /// Too many buffered operations or bytes.
    TooLarge,
}

#[derive(Debug, Default)]
struct Tx {
    ops: Vec<TxOp>,
    bytes: usize,
}

/// The open transactions of one session.
#[derive(Debug)]
pub(crate) struct Transactions {
    open: HashMap<String, Tx>,
    ops: usize,
    bytes: usize,
    max_bytes: usize,
}

impl Transactions {
    /// No open transactions; buffered bytes bounded by `max_frame_bytes` × 16.
    pub(crate) fn new(max_frame_bytes: usize) -> Transactions {
        Transactions {
            open: HashMap::new(),
            ops: 0,
            bytes: 0,
            max_bytes: max_frame_bytes.saturating_mul(BYTES_PER_FRAME_LIMIT),
        }
    }

    /// Opens transaction `name`.
    pub(crate) fn begin(&mut self, name: &str) -> Result<(), TxError> {
        if self.open.contains_key(name) {
            return Err(TxError::Duplicate);
        }
        if self.open.len() >= MAX_OPEN {
            return Err(TxError::TooManyOpen);
        }
        self.open.insert(name.to_owned(), Tx::default());
        Ok(())
    }

    /// Buffers `op`, which costs `bytes`, in transaction `name`.
    pub(crate) fn push(&mut self, name: &str, op: TxOp, bytes: usize) -> Result<(), TxError> {
        let tx = self.open.get_mut(name).ok_or(TxError::Unknown)?;
        if self.ops >= MAX_OPS || self.bytes.saturating_add(bytes) > self.max_bytes {
            return Err(TxError::TooLarge);
        }
        tx.ops.push(op);
        tx.bytes += bytes;
        self.ops += 1;
        self.bytes += bytes;
        Ok(())
    }

    /// Whether transaction `name` is open.
    pub(crate) fn is_open(&self, name: &str) -> bool {
        self.open.contains_key(name)
    }

    /// Closes transaction `name` and returns its operations in order (COMMIT).
    pub(crate) fn commit(&mut self, name: &str) -> Result<Vec<TxOp>, TxError> {
        let tx = self.open.remove(name).ok_or(TxError::Unknown)?;
        self.ops -= tx.ops.len();
        self.bytes -= tx.bytes;
        Ok(tx.ops)
    }

    /// Discards transaction `name` (ABORT).
    pub(crate) fn abort(&mut self, name: &str) -> Result<(), TxError> {
        self.commit(name).map(drop)
    }

    /// Discards every open transaction (disconnect).
    pub(crate) fn abort_all(&mut self) {
        self.open.clear();
        self.ops = 0;
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_and_bounds() {
        let mut t = Transactions::new(100);
        assert_eq!(t.push("x", TxOp::Settle(vec![], Verdict::Ack), 1), Err(TxError::Unknown));
        t.begin("x").unwrap();
        assert_eq!(t.begin("x"), Err(TxError::Duplicate));
        t.push("x", TxOp::Settle(vec![], Verdict::Ack), 1000).unwrap();
        assert_eq!(t.push("x", TxOp::Settle(vec![], Verdict::Ack), 601), Err(TxError::TooLarge));
        assert_eq!(t.commit("x").unwrap().len(), 1);
        assert_eq!(t.commit("x").unwrap_err(), TxError::Unknown);
        t.begin("y").unwrap();
        t.push("y", TxOp::Settle(vec![], Verdict::Ack), 1600).unwrap();
        t.abort("y").unwrap();
        assert!(!t.is_open("y"));
        for i in 0..MAX_OPEN {
            t.begin(&i.to_string()).unwrap();
        }
        assert_eq!(t.begin("one-more"), Err(TxError::TooManyOpen));
        t.abort_all();
        t.begin("z").unwrap();
    }
}
