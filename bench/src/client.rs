//! The HTTP client of the harness: one keep-alive connection pool shared by every worker, plain
//! HTTP, and helpers that turn a non-2xx answer into an error carrying the server's message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use serde_json::Value as Json;

/// A failed request: a status the server answered with, or a transport error.
#[derive(Debug, Clone)]
pub struct OpError(pub String);

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpError {}

/// The SensorThings API of the server under test.
#[derive(Debug, Clone)]
pub struct Api {
    client: reqwest::Client,
    /// `http://ADDR/v1.1`.
    pub root: String,
    /// Requests sent a second time because a pooled connection was gone (see [`Api::send`]).
    retries: Arc<AtomicU64>,
}

impl Api {
    /// A client for the server at `base_url` (`http://ADDR`), keeping up to `pool` idle
    /// connections open.
    pub fn new(base_url: &str, pool: usize) -> anyhow::Result<Api> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(pool)
            .pool_idle_timeout(Duration::from_secs(600))
            .tcp_nodelay(true)
            .no_proxy()
            .timeout(Duration::from_secs(300))
            .build()?;
        Ok(Api {
            client,
            root: format!("{}/v1.1", base_url.trim_end_matches('/')),
            retries: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How many requests were sent twice so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Sends a request, once more when sending failed: a server closes a keep-alive connection
    /// after an error answer whose request body it did not read, and the pool may hand out
    /// that connection before it notices. The request never reached a handler then, so
    /// sending it again duplicates nothing.
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, OpError> {
        match build().send().await {
            Ok(response) => Ok(response),
            Err(error) if error.is_request() && !error.is_timeout() => {
                self.retries.fetch_add(1, Ordering::Relaxed);
                build().send().await.map_err(transport)
            }
            Err(error) => Err(transport(error)),
        }
    }

    /// The absolute URL of `path` (e.g. `Things(1)`), or `path` itself when it is absolute.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}/{}", self.root, path.trim_start_matches('/'))
        }
    }

    /// GETs `path` and returns the body; a non-2xx answer is an error.
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, OpError> {
        let url = self.url(path);
        let response = self.send(|| self.client.get(&url)).await?;
        read_ok(response).await
    }

    /// GETs `path` as JSON.
    pub async fn get_json(&self, path: &str) -> Result<Json, OpError> {
        let body = self.get_bytes(path).await?;
        serde_json::from_slice(&body).map_err(|e| OpError(format!("malformed JSON: {e}")))
    }

    /// POSTs a JSON text to `path` and returns the body; a non-2xx answer is an error.
    pub async fn post(&self, path: &str, json: String) -> Result<Vec<u8>, OpError> {
        let url = self.url(path);
        let response = self
            .send(|| {
                self.client.post(&url).header(CONTENT_TYPE, "application/json").body(json.clone())
            })
            .await?;
        read_ok(response).await
    }

    /// POSTs and parses the answer as JSON.
    pub async fn post_json(&self, path: &str, json: String) -> Result<Json, OpError> {
        let body = self.post(path, json).await?;
        serde_json::from_slice(&body).map_err(|e| OpError(format!("malformed JSON: {e}")))
    }
}

fn transport(error: reqwest::Error) -> OpError {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    OpError(text)
}

async fn read_ok(response: reqwest::Response) -> Result<Vec<u8>, OpError> {
    let status = response.status();
    let body = response.bytes().await.map_err(transport)?;
    if status.is_success() {
        Ok(body.to_vec())
    } else {
        let text = String::from_utf8_lossy(&body);
        let message = serde_json::from_slice::<Json>(&body)
            .ok()
            .and_then(|json| json.get("message").and_then(Json::as_str).map(str::to_owned))
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(OpError(format!("HTTP {}: {message}", status.as_u16())))
    }
}

/// Percent-encodes a query value: OData punctuation stays readable, everything that would
/// change the meaning of a query string (`&`, `=`, `+`, `#`, spaces, …) is escaped.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for byte in value.bytes() {
        let keep = byte.is_ascii_alphanumeric() || b"-._~$()',/:*;@!".contains(&byte);
        if keep {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_what_would_change_a_query() {
        assert_eq!(
            encode("phenomenonTime ge 2024-01-01T00:00:00Z and result gt 1+2"),
            "phenomenonTime%20ge%202024-01-01T00:00:00Z%20and%20result%20gt%201%2B2"
        );
        assert_eq!(encode("st_within(location, geography'POINT(1 2)')").matches('%').count(), 2);
        assert_eq!(encode("a&b=c#"), "a%26b%3Dc%23");
    }
}
