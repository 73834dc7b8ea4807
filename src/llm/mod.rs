//! Provider wire formats as read-only views: the few fields of an OpenAI-compatible request the
//! gateway must understand, the minimal byte patches it may apply, SSE framing, and usage.
//!
//! Nothing here re-serialises a body: views borrow the original bytes, and a patch splices new
//! bytes into an exact span of the original.

pub mod prices;
pub mod request;
pub mod response;
pub mod sse;

pub use request::{RequestView, ViewError};
pub use response::{inspect_event, parse_answer, parse_usage, Answer, StreamEvent, StreamKind};
pub use sse::SseSplitter;
