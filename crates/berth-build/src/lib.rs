//! Dockerfile builds as pure logic: the parser (directives, continuations, heredocs), Docker's
//! variable expansion, typed instructions, the `.dockerignore` matcher and step cache keys.

pub mod cache;
pub mod expand;
pub mod ignore;
pub mod instruction;
pub mod parser;

pub use instruction::{Command, Instruction};
pub use parser::{parse, Dockerfile, Heredoc, Node};

/// Largest Dockerfile accepted, in bytes.
pub const MAX_DOCKERFILE_BYTES: usize = 1 << 20;
/// Most instructions a Dockerfile may have (every step of a build makes an image).
pub const MAX_INSTRUCTIONS: usize = 5000;
/// Deepest nesting of variable substitutions (`${A:-${B:-...}}`).
pub const MAX_NESTING: usize = 64;
/// Most bytes that variable substitutions may add to one expanded instruction argument.
pub const MAX_EXPANDED_BYTES: usize = 1 << 20;

/// A parse or evaluation error naming the file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The Dockerfile's name as given (`Dockerfile`, `-f` path).
    pub file: String,
    /// 1-based line of the instruction; 0 when not tied to a line.
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

impl Error {
    pub fn new(line: usize, msg: impl Into<String>) -> Error {
        Error {
            file: String::new(),
            line,
            msg: msg.into(),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = if self.file.is_empty() {
            "Dockerfile"
        } else {
            &self.file
        };
        if self.line == 0 {
            write!(f, "{file}: {}", self.msg)
        } else {
            write!(f, "{file}:{}: {}", self.line, self.msg)
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
