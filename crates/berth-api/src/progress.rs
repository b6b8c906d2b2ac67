//! Docker's JSON message stream (pull, push, load, build): one JSON object per line with
//! `status`, `id`, `progress`, `progressDetail` and, on failure, `errorDetail`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProgressDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    /// A failing build step's exit code (the docker CLI exits with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    #[serde(default)]
    pub message: String,
}

/// One line of the stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Message {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The progress bar Docker draws server-side, for clients that print it as is.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub progress: String,
    #[serde(
        default,
        rename = "progressDetail",
        skip_serializing_if = "Option::is_none"
    )]
    pub progress_detail: Option<ProgressDetail>,
    #[serde(
        default,
        rename = "errorDetail",
        skip_serializing_if = "Option::is_none"
    )]
    pub error_detail: Option<ErrorDetail>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// `docker build` output.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stream: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aux: Option<serde_json::Value>,
}

impl Message {
    pub fn status(id: &str, status: impl Into<String>) -> Message {
        Message {
            status: status.into(),
            id: id.to_string(),
            ..Message::default()
        }
    }

    /// A progress line with Docker's bar (`[=====>    ]  1.2MB/3.4MB`).
    pub fn progress(id: &str, status: &str, current: u64, total: Option<u64>) -> Message {
        Message {
            status: status.to_string(),
            id: id.to_string(),
            progress: bar(current, total),
            progress_detail: Some(ProgressDetail {
                current: Some(current),
                total,
            }),
            ..Message::default()
        }
    }

    pub fn error(message: impl Into<String>) -> Message {
        let m = message.into();
        Message {
            error_detail: Some(ErrorDetail {
                code: None,
                message: m.clone(),
            }),
            error: m,
            ..Message::default()
        }
    }

    /// A `docker build` output line.
    pub fn stream(text: impl Into<String>) -> Message {
        Message {
            stream: text.into(),
            ..Message::default()
        }
    }

    /// The line as the stream carries it (with the trailing newline).
    pub fn line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        s.push_str("\r\n");
        s
    }
}

/// Docker's textual progress bar, 50 columns wide, with human sizes.
pub fn bar(current: u64, total: Option<u64>) -> String {
    let sizes = |n: u64| crate::units::human_size(n as i64);
    match total.filter(|t| *t > 0) {
        Some(t) => {
            let width = 50u64;
            let filled = (current.min(t) * width / t) as usize;
            let mut b = String::from("[");
            b.push_str(&"=".repeat(filled));
            if filled < width as usize {
                b.push('>');
                b.push_str(&" ".repeat(width as usize - filled - 1));
            }
            b.push(']');
            format!("{b} {:>8}/{}", sizes(current), sizes(t))
        }
        None => sizes(current),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_bars() {
        let m = Message::progress("abc", "Downloading", 50, Some(100));
        let line = m.line();
        assert!(line.ends_with("\r\n"));
        let back: Message = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(back, m);
        assert!(back.progress.starts_with("[========================="));
        assert_eq!(bar(100, Some(100)).matches('=').count(), 50);
        let e: Message = serde_json::from_str(&Message::error("boom").line()).unwrap();
        assert_eq!(e.error_detail.unwrap().message, "boom");
        assert_eq!(
            serde_json::to_value(Message::status("x", "Pull complete")).unwrap(),
            serde_json::json!({"status": "Pull complete", "id": "x"})
        );
    }
}
