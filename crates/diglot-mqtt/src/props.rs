//! MQTT 5 PUBLISH and will properties to and from the protocol-neutral [`Props`].
//!
//! The properties that cross protocols (content type, response topic, correlation data,
//! payload format indicator, user properties) map one to one (architecture: "Protocol
//! mapping"). Message Expiry Interval becomes `Message::expires_at` and back (the session
//! does that, as it needs the time); Topic Alias and Subscription Identifier are
//! per-connection and never reach [`Props`].
//!
//! This module does not validate topic names; the session does that first.

use bytestring::ByteString;
use diglot_core::{Props, Topic};
use rmqtt_codec::v5::{LastWill, PublishProperties};

use crate::reason::Violation;

/// The neutral properties of an inbound MQTT 5 PUBLISH, or `None` if it carries none.
/// A Response Topic must be a topic name without wildcards [MQTT-3.3.2-14].
pub(crate) fn from_publish(p: &PublishProperties) -> Result<Option<Box<Props>>, Violation> {
    collect(
        p.content_type.as_ref(),
        p.response_topic.as_ref(),
        p.correlation_data.as_ref(),
        p.is_utf8_payload,
        &p.user_properties,
    )
}

/// The neutral properties of an MQTT 5 will, or `None` if it carries none.
pub(crate) fn from_will(w: &LastWill) -> Result<Option<Box<Props>>, Violation> {
    collect(
        w.content_type.as_ref(),
        w.response_topic.as_ref(),
        w.correlation_data.as_ref(),
        w.is_utf8_payload.unwrap_or(false),
        &w.user_properties,
    )
}

fn collect(
    content_type: Option<&ByteString>,
    response_topic: Option<&ByteString>,
    correlation_data: Option<&bytes::Bytes>,
    utf8_payload: bool,
    user: &[(ByteString, ByteString)],
) -> Result<Option<Box<Props>>, Violation> {
    if content_type.is_none()
        && response_topic.is_none()
        && correlation_data.is_none()
        && !utf8_payload
        && user.is_empty()
    {
        return Ok(None);
    }
    if let Some(t) = response_topic {
        Topic::new(t).map_err(|_| Violation::Protocol("response topic is not a valid topic name"))?;
    }
    Ok(Some(Box::new(Props {
        content_type: content_type.map(|s| s.to_string()),
        response_topic: response_topic.map(|s| s.to_string()),
        correlation_data: correlation_data.cloned(),
        utf8_payload,
        user: user.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    })))
}

/// The MQTT 5 PUBLISH properties for an outbound message's neutral properties.
pub(crate) fn to_publish(props: Option<&Props>) -> PublishProperties {
    let Some(p) = props else { return PublishProperties::default() };
    PublishProperties {
        content_type: p.content_type.as_deref().map(ByteString::from),
        // [MQTT-3.3.2-14] A Response Topic is a topic name, without wildcards. One that came
        // from elsewhere (a STOMP `reply-to` such as `/topic/a/+`) and is not one is left out
        // for MQTT 5 subscribers, who would have to close the connection on it.
        response_topic: p.response_topic.as_deref().filter(|t| Topic::validate(t).is_ok()).map(ByteString::from),
        correlation_data: p.correlation_data.clone(),
        is_utf8_payload: p.utf8_payload,
        user_properties: p
            .user
            .iter()
            .map(|(k, v)| (ByteString::from(k.as_str()), ByteString::from(v.as_str())))
            .collect(),
        ..PublishProperties::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn round_trip() {
        let p = PublishProperties {
            content_type: Some("text/plain".into()),
            response_topic: Some("reply/to".into()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            is_utf8_payload: true,
            user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
            ..PublishProperties::default()
        };
        let props = from_publish(&p).unwrap().unwrap();
        assert_eq!(props.user.len(), 2);
        assert_eq!(to_publish(Some(&props)), p);
        assert!(from_publish(&PublishProperties::default()).unwrap().is_none());
    }

    #[test]
    fn a_response_topic_that_is_no_topic_name_is_not_sent() {
        let with = |t: &str| Props { response_topic: Some(t.into()), ..Props::default() };
        for bad in ["a/+", "#", "plain/+/x", "foo+bar#baz", "", "a\0b"] {
            assert_eq!(to_publish(Some(&with(bad))).response_topic, None, "{bad:?}");
        }
        assert_eq!(to_publish(Some(&with("reply/to"))).response_topic.as_deref(), Some("reply/to"));
    }

    #[test]
    fn wildcard_response_topic_is_refused() {
        let p = PublishProperties { response_topic: Some("a/+".into()), ..PublishProperties::default() };
        assert!(from_publish(&p).is_err());
    }
}
