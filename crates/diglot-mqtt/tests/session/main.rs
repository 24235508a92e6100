//! Drives the MQTT `Session` as a client would, with packets encoded by rmqtt-codec, and
//! checks the packets it writes back and the actions it returns.

mod auth;
mod common;
mod connect;
mod durable;
mod fuzz;
mod mqtt5;
mod publish;
mod qos2;
mod queues;
mod retained;
mod subscribe;
