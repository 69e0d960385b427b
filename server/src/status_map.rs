//! Corrects the status codes of errors that tonic raises before our handlers run:
//! an over-size request (tonic: OUT_OF_RANGE) becomes RESOURCE_EXHAUSTED, and a request that is not valid
//! protobuf, e.g. a text field that is not UTF-8 (tonic-prost: INTERNAL), becomes INVALID_ARGUMENT.
//! Both are the caller's fault, and the API promises these codes.

use http::{HeaderValue, Response};

const OUT_OF_RANGE: &str = "11";
const INTERNAL: &str = "13";

/// Rewrites `grpc-status` of one response (header form, as tonic sends unary errors).
pub fn fix_status<B>(mut resp: Response<B>) -> Response<B> {
    let headers = resp.headers_mut();
    let status = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let new_code = match status.as_deref() {
        Some(OUT_OF_RANGE)
            if message.contains("message%20length%20too%20large")
                || message.contains("message length too large") =>
        {
            Some("8")
        }
        Some(INTERNAL)
            if message.contains("failed%20to%20decode%20Protobuf")
                || message.contains("failed to decode Protobuf") =>
        {
            Some("3")
        }
        _ => None,
    };
    if let Some(code) = new_code {
        headers.insert("grpc-status", HeaderValue::from_static(code));
    }
    resp
}
