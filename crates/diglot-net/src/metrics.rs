//! Prometheus metrics (`GET /metrics`).

use crate::server::Shared;

/// The content type of [`render`]'s output.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The broker's metrics, registered once per server.
#[derive(Debug, Default)]
pub(crate) struct Metrics {}

/// Renders every metric in the Prometheus text exposition format.
pub(crate) fn render(shared: &Shared) -> String {
    let _ = &shared.metrics;
    String::new()
}
