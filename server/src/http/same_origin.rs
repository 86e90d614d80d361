//! Cross-site request forgery guard. A state-changing request (any method but GET, HEAD,
//! OPTIONS) must come from a page of this site: the browser's `Sec-Fetch-Site`, `Origin`
//! or `Referer` must name this host, and its body must be one of the types the forms and
//! server functions send. SameSite=Lax cookies alone let any page on another port of the
//! class machine post with the students' cookies; this refuses it with 403.
//!
//! Clients that send none of the three headers (the terminal, scripts, tests) are not
//! browsers carrying someone's cookies, and pass.

use app::error::AppError;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The body types the site's forms and server functions send.
const ACCEPTED_TYPES: [&str; 3] = [
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "application/json",
];

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It came from another site (403).
    CrossSite(String),
    /// Its body is of a type the site never sends (415).
    BodyType(String),
}

/// Refuses state-changing requests from other sites or with unexpected body types.
pub async fn same_origin_only(request: Request, next: Next) -> Response {
    match check(request.method(), request.headers(), request.uri()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(
                method = %request.method(),
                path = request.uri().path(),
                ?refusal,
                "refused a request from another site"
            );
            refused(refusal)
        }
    }
}

/// The answer to a refused request: the error as server functions encode it, so the page
/// shows the message.
fn refused(refusal: Refusal) -> Response {
    let (status, error) = match refusal {
        Refusal::CrossSite(message) => (StatusCode::FORBIDDEN, AppError::Forbidden(message)),
        Refusal::BodyType(message) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::BadRequest(message),
        ),
    };
    let body = serde_json::to_string(&error).unwrap_or_else(|_| error.to_string());
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(body),
    )
        .into_response()
}

/// Checks one request's method and headers; `uri` supplies the host when there is no
/// `Host` header (HTTP/2).
pub fn check(method: &Method, headers: &HeaderMap, uri: &axum::http::Uri) -> Result<(), Refusal> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let text = |name: &str| header_text(headers, name);
    let from_elsewhere = || {
        Refusal::CrossSite(
            "This request came from another website, so it was refused. Open Jigsaw Lab \
             itself and try again there."
                .to_string(),
        )
    };
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return Err(from_elsewhere());
    }
    let hosts: Vec<&str> = [text("host"), text("x-forwarded-host")]
        .into_iter()
        .flatten()
        .map(|h| h.split(',').next().unwrap_or(h).trim())
        .chain(uri.authority().map(|a| a.as_str()))
        .collect();
    let same_host = |url: &str| {
        authority_of(url).is_some_and(|a| hosts.iter().any(|h| h.eq_ignore_ascii_case(a)))
    };
    match (text("origin"), text("referer")) {
        (Some(origin), _) if origin != "null" => {
            if !same_host(origin) {
                return Err(from_elsewhere());
            }
        }
        (Some(_null), _) => return Err(from_elsewhere()),
        (None, Some(referer)) => {
            if !same_host(referer) {
                return Err(from_elsewhere());
            }
        }
        (None, None) => {}
    }
    if let Some(content_type) = text("content-type") {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if !ACCEPTED_TYPES.contains(&essence.as_str()) {
            return Err(Refusal::BodyType(format!(
                "Requests with a body of type \u{201c}{essence}\u{201d} are not accepted; \
                 the site's forms send {}.",
                ACCEPTED_TYPES.join(", ")
            )));
        }
    }
    Ok(())
}

/// Header `name` as text, if present and readable.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The `host[:port]` of an absolute http(s) URL.
fn authority_of(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, Uri};

    fn verdict(method: Method, headers: &[(&str, &str)]) -> Result<(), Refusal> {
        let mut map = HeaderMap::new();
        map.insert(header::HOST, HeaderValue::from_static("class.example:3000"));
        for (name, value) in headers {
            map.insert(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        check(&method, &map, &Uri::from_static("/api/set-phase"))
    }

    const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

    #[test]
    fn reads_pass_whatever_their_origin() {
        assert!(verdict(Method::GET, &[("origin", "http://evil.example")]).is_ok());
    }

    #[test]
    fn posts_from_this_site_pass() {
        assert!(
            verdict(
                Method::POST,
                &[("origin", "http://class.example:3000"), FORM]
            )
            .is_ok()
        );
        assert!(
            verdict(
                Method::POST,
                &[("origin", "https://CLASS.example:3000"), FORM]
            )
            .is_ok()
        );
        assert!(
            verdict(
                Method::POST,
                &[
                    ("referer", "http://class.example:3000/instructor?x=1"),
                    FORM
                ]
            )
            .is_ok()
        );
        assert!(verdict(Method::POST, &[("sec-fetch-site", "same-origin"), FORM]).is_ok());
        // Behind a proxy that forwards the public host.
        assert!(
            verdict(
                Method::POST,
                &[
                    ("origin", "https://lab.school.example"),
                    ("x-forwarded-host", "lab.school.example"),
                    FORM
                ]
            )
            .is_ok()
        );
        // No browser headers at all: the terminal or a script.
        assert!(verdict(Method::POST, &[FORM]).is_ok());
    }

    #[test]
    fn posts_from_elsewhere_are_refused() {
        for headers in [
            vec![("origin", "http://evil.example"), FORM],
            vec![("origin", "http://class.example:3001"), FORM],
            vec![("origin", "null"), FORM],
            vec![("referer", "http://evil.example/page"), FORM],
            vec![("sec-fetch-site", "cross-site"), FORM],
            vec![
                ("sec-fetch-site", "same-site"),
                ("origin", "http://class.example:3000"),
                FORM,
            ],
        ] {
            assert!(
                matches!(verdict(Method::POST, &headers), Err(Refusal::CrossSite(_))),
                "{headers:?}"
            );
        }
        assert!(matches!(
            verdict(Method::DELETE, &[("origin", "http://evil.example")]),
            Err(Refusal::CrossSite(_))
        ));
    }

    #[test]
    fn bodies_of_other_types_are_refused() {
        let plain = ("content-type", "text/plain;charset=UTF-8");
        assert!(matches!(
            verdict(
                Method::POST,
                &[("origin", "http://class.example:3000"), plain]
            ),
            Err(Refusal::BodyType(_))
        ));
        assert!(
            verdict(
                Method::POST,
                &[("content-type", "multipart/form-data; boundary=x")]
            )
            .is_ok()
        );
    }

    #[test]
    fn authorities_are_read_from_urls() {
        assert_eq!(authority_of("http://a.b:1/x"), Some("a.b:1"));
        assert_eq!(authority_of("https://a.b"), Some("a.b"));
        assert_eq!(authority_of("https://a.b?q"), Some("a.b"));
        assert_eq!(authority_of("ftp://a.b"), None);
        assert_eq!(authority_of("http://"), None);
    }
}
