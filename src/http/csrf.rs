//! Cross-site request refusal for cookie-authenticated state changes.
//!
//! A browser sends the session cookie with a cross-site request too
//! (`SameSite=Lax` still allows top-level navigations), so in the
//! production profile `DELETE /sessions` also checks where the request
//! comes from: `Sec-Fetch-Site` (sent by current browsers) must not say
//! `cross-site`, and an `Origin`, when present, must be one of the allowed
//! origins. Requests with neither header (curl, server-side clients) are
//! not browser requests and pass.

use rouille::Request;

use super::error::ApiError;

/// `Err(403)` for a request a browser made on behalf of another site.
pub fn check(request: &Request, allowed_origins: &[String]) -> Result<(), ApiError> {
    let refused = Err(ApiError::Forbidden("cross-site request refused"));
    if let Some(site) = request.header("Sec-Fetch-Site") {
        if site.eq_ignore_ascii_case("cross-site") {
            return refused;
        }
    }
    if let Some(origin) = request.header("Origin") {
        if !allowed_origins
            .iter()
            .any(|a| a.eq_ignore_ascii_case(origin.trim()))
        {
            return refused;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        let headers = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Request::fake_http("DELETE", "/sessions", headers, vec![])
    }

    #[test]
    fn cross_site_requests_are_refused() {
        let allowed = vec!["https://app.example.com".to_owned()];
        assert!(check(&request(&[]), &allowed).is_ok());
        assert!(check(&request(&[("Origin", "https://app.example.com")]), &allowed).is_ok());
        assert!(check(&request(&[("Sec-Fetch-Site", "same-origin")]), &allowed).is_ok());
        assert!(check(&request(&[("Origin", "https://evil.example")]), &allowed).is_err());
        assert!(check(&request(&[("Origin", "null")]), &allowed).is_err());
        assert!(check(&request(&[("Sec-Fetch-Site", "cross-site")]), &allowed).is_err());
        assert!(check(&request(&[("Origin", "https://app.example.com")]), &[]).is_err());
    }
}
