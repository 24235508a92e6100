//! Static files from `http.static_dir` on the WebSocket and HTTP listeners: the example pages
//! (`diglot --serve-examples`) or a small web app next to its broker.
//!
//! Only `GET` and `HEAD` of paths no other handler owns come here. A request path maps to a file
//! under the directory segment by segment: each segment is percent-decoded on its own, and a
//! segment that decodes to something with a `/`, `\` or NUL in it, or that starts with `.`
//! (`.`, `..`, and hidden files such as `.git`), is refused with 404, as is any path whose
//! canonical form (symlinks resolved) lies outside the canonical directory. A directory
//! serves its `index.html`; `/dir` without the slash is redirected to `/dir/` so that the page's
//! relative links resolve. Everything else is 404.
//!
//! It is not a general web server: no ranges, no compression, no caching validators, no
//! directory listings. Files are read whole with blocking calls from the (synchronous) request
//! handler; they are meant to be small pages and scripts read from the page cache, and a file
//! over [`MAX_FILE_BYTES`] is refused.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

type Body = Full<Bytes>;

/// Largest file served, in bytes.
pub(crate) const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Answers a request for a path that nothing else owns: a file under `http.static_dir`, or 404
/// (also when it is off, and for methods other than `GET` and `HEAD`, and WebSocket upgrades).
pub(crate) fn serve<B>(settings: &crate::HttpSettings, req: &Request<B>) -> Response<Body> {
    serve_from(settings.static_dir.as_deref(), req).unwrap_or_else(not_found)
}

/// The answer from `root` for a `GET` or `HEAD` that is not a WebSocket upgrade; `None` for
/// other requests or without a directory.
fn serve_from<B>(root: Option<&Path>, req: &Request<B>) -> Option<Response<Body>> {
    let root = root?;
    if !(req.method() == Method::GET || req.method() == Method::HEAD) || req.headers().contains_key(header::UPGRADE) {
        return None;
    }
    let path = req.uri().path();
    let Some(relative) = relative_path(path) else { return Some(not_found()) };
    // Both sides canonical, so a symlink inside the directory that points out of it is caught.
    let Ok(root) = root.canonicalize() else {
        tracing::warn!(dir = %root.display(), "http.static_dir cannot be read");
        return Some(not_found());
    };
    let Ok(mut file) = root.join(&relative).canonicalize() else { return Some(not_found()) };
    if !file.starts_with(&root) {
        return Some(not_found());
    }
    if file.is_dir() {
        if !path.ends_with('/') {
            return Some(redirect(&format!("{path}/")));
        }
        match file.join("index.html").canonicalize() {
            Ok(index) if index.starts_with(&root) => file = index,
            _ => return Some(not_found()),
        }
    }
    Some(read(&file))
}

/// The path below the directory that `path` (as sent, percent-encoded) names, or `None` if it
/// may not be served.
fn relative_path(path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for raw in path.split('/').filter(|s| !s.is_empty()) {
        let segment = diglot_auth::request::percent_decode(raw)?;
        if segment.starts_with('.') || segment.contains(['/', '\\', '\0']) {
            return None;
        }
        out.push(segment);
    }
    Some(out)
}

fn read(file: &Path) -> Response<Body> {
    match std::fs::metadata(file) {
        Ok(m) if m.is_file() && m.len() <= MAX_FILE_BYTES => {}
        Ok(m) if m.is_file() => {
            tracing::warn!(file = %file.display(), bytes = m.len(), "static file too large to serve");
            return plain(StatusCode::FORBIDDEN, "file too large to serve\n");
        }
        _ => return not_found(),
    }
    let body = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            tracing::debug!(file = %file.display(), error = %e, "static file unreadable");
            return not_found();
        }
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(file)));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Pages under development change; let browsers revalidate rather than cache stale copies.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// The media type of a file, by its extension.
fn content_type(file: &Path) -> &'static str {
    let ext = file.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("xml") => "application/xml",
        Some("pdf") => "application/pdf",
        _ => "application/octet-stream",
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

fn not_found() -> Response<Body> {
    plain(StatusCode::NOT_FOUND, "not found\n")
}

fn redirect(location: &str) -> Response<Body> {
    let mut resp = plain(StatusCode::MOVED_PERMANENTLY, "moved\n");
    match HeaderValue::from_str(location) {
        Ok(v) => {
            resp.headers_mut().insert(header::LOCATION, v);
            resp
        }
        Err(_) => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(root: &Path, path: &str) -> Response<Body> {
        let req = Request::get(path).body(()).unwrap();
        serve_from(Some(root), &req).expect("a GET is served when a directory is set")
    }

    fn body(resp: Response<Body>) -> String {
        use http_body_util::BodyExt;
        let collected = futures::executor::block_on(resp.into_body().collect()).unwrap();
        String::from_utf8(collected.to_bytes().to_vec()).unwrap()
    }

    /// A temp directory removed on drop (the crate has no dev-dependencies).
    struct TempDir(PathBuf);

    impl TempDir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn site() -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = TempDir(std::env::temp_dir().join(format!("diglot-files-{}-{n}", std::process::id())));
        let root = dir.path().join("site");
        std::fs::create_dir_all(root.join("chat/vendor")).unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::write(root.join("chat/index.html"), "<h1>chat</h1>").unwrap();
        std::fs::write(root.join("chat/vendor/lib.min.js"), "var x;").unwrap();
        std::fs::write(root.join("a b.txt"), "spaced").unwrap();
        std::fs::write(root.join(".secret"), "hidden").unwrap();
        std::fs::write(dir.path().join("outside.txt"), "outside").unwrap();
        dir
    }

    #[test]
    fn serves_files_with_their_types_and_nosniff() {
        let dir = site();
        let root = dir.path().join("site");
        let resp = get(&root, "/chat/vendor/lib.min.js");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert_eq!(resp.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(body(resp), "var x;");
        let resp = get(&root, "/chat/");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(body(resp), "<h1>chat</h1>");
        assert_eq!(body(get(&root, "/a%20b.txt?x=1")), "spaced");
    }

    #[test]
    fn a_directory_without_its_slash_is_redirected() {
        let dir = site();
        let resp = get(&dir.path().join("site"), "/chat");
        assert_eq!(resp.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(resp.headers()[header::LOCATION], "/chat/");
    }

    #[test]
    fn traversal_hidden_files_and_missing_files_are_404() {
        let dir = site();
        let root = dir.path().join("site");
        for path in [
            "/../outside.txt",
            "/chat/../../outside.txt",
            "/%2e%2e/outside.txt",
            "/%2E%2E%2Foutside.txt",
            "/chat/..%2f..%2foutside.txt",
            "/chat%5c..%5c..%5coutside.txt",
            "/.secret",
            "/%2esecret",
            "/nul%00.txt",
            "/bad%zzescape",
            "/bad%+1",
            "/%ff",
            "/missing.html",
            "/empty/",
        ] {
            assert_eq!(get(&root, path).status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_of_the_directory_are_404() {
        let dir = site();
        let root = dir.path().join("site");
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), root.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        std::os::unix::fs::symlink(root.join("chat/index.html"), root.join("inside.html")).unwrap();
        assert_eq!(get(&root, "/link.txt").status(), StatusCode::NOT_FOUND);
        assert_eq!(get(&root, "/up/outside.txt").status(), StatusCode::NOT_FOUND);
        assert_eq!(get(&root, "/inside.html").status(), StatusCode::OK);
    }

    #[test]
    fn only_plain_gets_and_heads_and_only_with_a_directory() {
        let dir = site();
        let root = dir.path().join("site");
        let post = Request::post("/chat/").body(()).unwrap();
        assert!(serve_from(Some(&root), &post).is_none());
        let upgrade = Request::get("/chat/").header(header::UPGRADE, "websocket").body(()).unwrap();
        assert!(serve_from(Some(&root), &upgrade).is_none());
        let head = Request::head("/chat/").body(()).unwrap();
        assert_eq!(serve_from(Some(&root), &head).unwrap().status(), StatusCode::OK);
        assert!(serve_from(None, &Request::get("/chat/").body(()).unwrap()).is_none());
    }
}
