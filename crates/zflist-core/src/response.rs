//! What a command hands back to the front end: data for the JSON envelope, the text to
//! print otherwise, and whether the run must end with a non-zero exit although it completed
//! (e.g. `verify` found missing chunks). Also the progress interface long commands report
//! through.

use serde_json::{Map, Value};

/// The result of a command that ran to completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The `response` member of the JSON envelope.
    pub json: Value,
    /// What text mode prints on stdout (may be empty).
    pub text: String,
    /// When set, the command completed but found a problem: the front end prints the
    /// output, reports this message as the error and exits non-zero.
    pub failure: Option<String>,
    /// When set, the process exits with this code (`run`: the entrypoint's).
    pub exit_code: Option<u8>,
    /// Notes and warnings (`note: …`, `warning: …`): text mode prints them on stderr, so
    /// stdout holds the result only.
    pub notes: Vec<String>,
}

impl Response {
    /// No data: `{}` in JSON mode, nothing in text mode.
    pub fn empty() -> Self {
        Response {
            json: Value::Object(Map::new()),
            text: String::new(),
            failure: None,
            exit_code: None,
            notes: Vec::new(),
        }
    }

    /// A response with JSON data and its text rendering.
    pub fn new(json: Value, text: impl Into<String>) -> Self {
        Response {
            json,
            text: text.into(),
            failure: None,
            exit_code: None,
            notes: Vec::new(),
        }
    }

    /// Adds notes and warnings for stderr (see [`Response::notes`]).
    pub fn with_notes(mut self, notes: Vec<String>) -> Self {
        self.notes.extend(notes);
        self
    }

    /// Marks the response as a failure with `message`.
    pub fn failed(mut self, message: impl Into<String>) -> Self {
        self.failure = Some(message.into());
        self
    }
}

/// Receives progress of long operations.
pub trait Progress: Sync {
    /// `current` of `total` done (`total` 0 when unknown), with a short description.
    fn update(&self, message: &str, current: u64, total: u64);

    /// A transfer: `done` of `total` bytes (`total` 0 when unknown) and `chunks` chunks so
    /// far; a terminal bar shows bytes, chunks, rate and ETA. By default the same as
    /// `update(message, done, total)`.
    fn transfer(&self, message: &str, done: u64, total: u64, chunks: u64) {
        let _ = chunks;
        self.update(message, done, total);
    }

    /// A stage ended (a bar may be cleared); by default nothing.
    fn finish(&self, _message: &str) {}

    /// A non-fatal warning for the user.
    fn warn(&self, _message: &str) {}
}

/// Discards progress.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn update(&self, _message: &str, _current: u64, _total: u64) {}
}

/// The JSON object of one `ZFLIST_PROGRESS=1` line:
/// `{"status": "progress", "message": ..., "current": n, "total": n}`.
pub fn progress_line(message: &str, current: u64, total: u64) -> Value {
    serde_json::json!({
        "status": "progress",
        "message": message,
        "current": current,
        "total": total,
    })
}

/// The JSON envelope the reference prints in JSON mode:
/// `{"success": bool, "error": null | {"function", "message"}, "response": ...}`.
pub fn envelope(function: &str, result: &Result<Response, crate::Error>) -> Value {
    match result {
        Ok(r) => match &r.failure {
            None => serde_json::json!({"success": true, "error": null, "response": r.json}),
            Some(m) => serde_json::json!({
                "success": false,
                "error": {"function": function, "message": m},
                "response": r.json,
            }),
        },
        Err(e) => serde_json::json!({
            "success": false,
            "error": {"function": e.function, "message": e.message()},
            "response": {},
        }),
    }
}

/// Serialises JSON the way the reference tool (jansson) does: `", "` and `": "` separators.
pub use flist_format::metadata::to_reference_json;
