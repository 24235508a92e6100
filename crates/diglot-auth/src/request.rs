//! Finding a bearer token in a WebSocket handshake request.
//!
//! Browsers cannot set headers on a WebSocket, so a token may come three ways, tried in this
//! order (the first non-empty one wins):
//! 1. `Authorization: Bearer <token>` (header name and scheme case-insensitive, RFC 6750 §2.1,
//!    RFC 9110 §11.1);
//! 2. the cookie named by `jwt.cookie_name` (RFC 6265 `Cookie` header; a value in double quotes
//!    is unquoted; several `Cookie` headers are all read);
//! 3. the `token` query parameter (percent-decoded; `+` is kept as is, since JWTs are
//!    base64url and never contain `+` or spaces).
//!
//! The functions take plain strings so that this crate needs no HTTP types: pass
//! `(name.as_str(), value.to_str()?)` pairs and `uri.query()`. They only find the token; they
//! do not validate it.

/// Finds the bearer token in a handshake request's headers and query string.
///
/// `headers` yields `(name, value)` pairs; `query` is the part after `?` without the `?`;
/// `cookie_name` is `jwt.cookie_name` (cookies are ignored when `None`).
pub fn token_from_request<'a, I>(headers: I, query: Option<&str>, cookie_name: Option<&str>) -> Option<String>
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let mut from_cookie = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("authorization") {
            if let Some(t) = bearer(value) {
                return Some(t.to_owned());
            }
        } else if name.eq_ignore_ascii_case("cookie") && from_cookie.is_none() {
            if let Some(cookie) = cookie_name {
                from_cookie = cookie_value(value, cookie).map(str::to_owned);
            }
        }
    }
    from_cookie.or_else(|| query.and_then(|q| query_param(q, "token")))
}

/// The token in an `Authorization` header value, if its scheme is `Bearer`.
pub fn bearer(value: &str) -> Option<&str> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The value of cookie `name` in one `Cookie` header value (`a=1; b=2`).
pub fn cookie_value<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        if k.trim() != name {
            return None;
        }
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        (!v.is_empty()).then_some(v)
    })
}

/// The percent-decoded value of query parameter `name`, if present, non-empty and valid
/// UTF-8 after decoding.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if k != name {
            return None;
        }
        percent_decode(v).filter(|v| !v.is_empty())
    })
}

/// Percent-decodes `s` (RFC 3986 §2.1): `None` if an escape is not `%` and two hex digits, or
/// if the result is not UTF-8. `+` stays `+`.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            // from_str_radix alone would take a sign ("%+1").
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(headers: &[(&str, &str)], query: Option<&str>, cookie: Option<&str>) -> Option<String> {
        token_from_request(headers.iter().copied(), query, cookie)
    }

    #[test]
    fn authorization_header() {
        assert_eq!(t(&[("Authorization", "Bearer abc.def.ghi")], None, None).as_deref(), Some("abc.def.ghi"));
        assert_eq!(t(&[("authorization", "bearer   x ")], None, None).as_deref(), Some("x"));
        assert_eq!(t(&[("AUTHORIZATION", "BEARER x")], None, None).as_deref(), Some("x"));
        assert_eq!(t(&[("Authorization", "Basic dXNlcjpwYXNz")], None, None), None);
        assert_eq!(t(&[("Authorization", "Bearer")], None, None), None);
        assert_eq!(t(&[("Authorization", "Bearer ")], None, None), None);
        assert_eq!(t(&[("Authorization", "Bearerx y")], None, None), None);
        assert_eq!(t(&[("X-Authorization", "Bearer x")], None, None), None);
    }

    #[test]
    fn cookie() {
        let h = [("Cookie", "theme=dark; diglot_token=tok.en.1; other=2")];
        assert_eq!(t(&h, None, Some("diglot_token")).as_deref(), Some("tok.en.1"));
        assert_eq!(t(&h, None, None), None, "cookies are read only when a name is configured");
        assert_eq!(t(&h, None, Some("token")), None);
        assert_eq!(t(&h, None, Some("diglot")), None, "no prefix match");
        assert_eq!(t(&[("cookie", "diglot_token=\"q.u.o\"")], None, Some("diglot_token")).as_deref(), Some("q.u.o"));
        assert_eq!(t(&[("cookie", "diglot_token=")], None, Some("diglot_token")), None);
        let two = [("cookie", "a=1"), ("cookie", "diglot_token=second")];
        assert_eq!(t(&two, None, Some("diglot_token")).as_deref(), Some("second"));
    }

    #[test]
    fn query() {
        assert_eq!(t(&[], Some("token=a.b.c"), None).as_deref(), Some("a.b.c"));
        assert_eq!(t(&[], Some("x=1&token=a%2Eb&y=2"), None).as_deref(), Some("a.b"));
        assert_eq!(t(&[], Some("tokens=a"), None), None);
        assert_eq!(t(&[], Some("xtoken=a"), None), None);
        assert_eq!(t(&[], Some("token="), None), None);
        assert_eq!(t(&[], Some("token"), None), None);
        assert_eq!(t(&[], Some("token=%zz"), None), None);
        assert_eq!(t(&[], Some("token=%4"), None), None);
        assert_eq!(t(&[], Some("token=%ff"), None), None, "not UTF-8");
        assert_eq!(t(&[], Some(""), None), None);
        assert_eq!(t(&[], None, None), None);
    }

    #[test]
    fn precedence() {
        let h = [("Cookie", "c=from-cookie"), ("Authorization", "Bearer from-header")];
        assert_eq!(t(&h, Some("token=from-query"), Some("c")).as_deref(), Some("from-header"));
        assert_eq!(t(&h[..1], Some("token=from-query"), Some("c")).as_deref(), Some("from-cookie"));
        assert_eq!(t(&h[..1], Some("token=from-query"), None).as_deref(), Some("from-query"));
        // A non-Bearer Authorization header does not hide the other sources.
        let basic = [("Authorization", "Basic x")];
        assert_eq!(t(&basic, Some("token=q"), None).as_deref(), Some("q"));
    }
}
