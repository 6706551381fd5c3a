//! Fetching a domain's policy: `GET https://mta-sts.<domain>/.well-known/mta-sts.txt`
//! (RFC 8461 3.3) through [`https`](super::super::https): the certificate must verify for
//! `mta-sts.<domain>`, the answer must be `200` (redirects are not followed) with a
//! `text/plain` body of at most 64 KiB, all within a minute; then the body is parsed.

use super::super::https::{self, HttpsError, Limits, Request};
use super::super::report::ResultType;
use super::super::trust::Trust;
use super::policy::StsPolicy;
use mail_auth::MessageAuthenticator;
use std::time::Duration;

/// RFC 8461 3.3 suggests a timeout and a size limit; these are the values it names.
pub const LIMITS: Limits = Limits {
    timeout: Duration::from_secs(60),
    max_body: 64 * 1024,
};

/// Why no policy came of a fetch, in the terms of a TLS report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    /// `sts-policy-fetch-error`, `sts-webpki-invalid` or `sts-policy-invalid`.
    pub result: ResultType,
    pub message: String,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The policy host of `domain`.
pub fn policy_host(domain: &str) -> String {
    format!("mta-sts.{domain}")
}

/// Fetch and parse the policy of `domain` (ASCII, lower case).
pub async fn fetch(
    resolver: &MessageAuthenticator,
    trust: &Trust,
    domain: &str,
    limits: Limits,
) -> Result<StsPolicy, FetchError> {
    let host = policy_host(domain);
    let request = Request {
        method: "GET",
        host: &host,
        port: 443,
        path: "/.well-known/mta-sts.txt",
        body: None,
    };
    let fail = |result, message: String| FetchError { result, message };
    let answer = match https::send(resolver, trust, request, limits).await {
        Ok(a) => a,
        Err(e @ HttpsError::Certificate(..)) => {
            return Err(fail(ResultType::StsWebpkiInvalid, e.to_string()))
        }
        Err(e @ HttpsError::TooLarge(..)) => {
            return Err(fail(ResultType::StsPolicyInvalid, e.to_string()))
        }
        Err(e) => return Err(fail(ResultType::StsPolicyFetchError, e.to_string())),
    };
    if answer.status != 200 {
        return Err(fail(
            ResultType::StsPolicyFetchError,
            format!(
                "https://{host}/.well-known/mta-sts.txt answered HTTP {}",
                answer.status
            ),
        ));
    }
    // 3.2: the policy is text/plain (a login page or an HTML error served with 200 is not).
    if answer.media_type.as_deref() != Some("text/plain") {
        return Err(fail(
            ResultType::StsPolicyInvalid,
            format!(
                "the policy at https://{host}/ is served as {}, not text/plain",
                answer.media_type.as_deref().unwrap_or("(no Content-Type)")
            ),
        ));
    }
    let text = String::from_utf8(answer.body).map_err(|_| {
        fail(
            ResultType::StsPolicyInvalid,
            format!("the policy at https://{host}/ is not UTF-8 text"),
        )
    })?;
    StsPolicy::parse(&text).map_err(|e| {
        fail(
            ResultType::StsPolicyInvalid,
            format!("the policy at https://{host}/ is invalid: {e}"),
        )
    })
}
