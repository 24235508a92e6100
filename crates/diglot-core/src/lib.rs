//! Diglot's protocol-neutral core.
//!
//! Everything here is shared by the MQTT and STOMP adapters and by the network layer: the
//! canonical [`Topic`] and [`Filter`] types, [`Message`] and [`Delivery`], the subscription
//! [`Trie`], the [`Router`], the bounded per-connection [`Outbox`], the [`Adapter`] contract
//! that every protocol implements, and [`CloseReason`].
//!
//! This crate deliberately knows no protocol and no socket.

pub mod adapter;
pub mod auth;
pub mod close;
pub mod cluster;
pub mod counter;
pub mod limits;
pub mod message;
pub mod outbox;
pub mod retained;
pub mod router;
pub mod topic;
pub mod trie;

pub use adapter::{
    durable_subscription_queue, named_queue, queue_topic, session_queue, ws_frame_header, ws_header_len_of, Action,
    Adapter, ConnInfo, KeptSubscription, Output, PublishError, Qos2Flows, RetainHandling, Transport, WsFramed,
    SESSION_QUEUE_PREFIX,
};
pub use auth::{AllowAll, Credentials, Grant, LoginOutcome, LoginRefusal, LoginRequest, Permissions, JWT_AUTH_METHOD};
pub use close::CloseReason;
pub use counter::Counter;
pub use limits::{Breaches, Bucket, Limit, Limits};
pub use message::{Delivery, DurableRef, Encodings, Message, Props, Qos, QueueId, Seq, WireSlot};
pub use outbox::{Outbox, PushOutcome, Wake};
pub use retained::{RetainChange, Retained};
pub use router::{
    ConnId, GroupHook, InterestHook, PublishReport, Router, Serve, ShareGroup, SubId, Subscriber, Target,
};
pub use topic::{Filter, Topic, TopicError};
pub use trie::Trie;
