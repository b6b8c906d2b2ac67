//! The Dockerfile parser: parser directives, comments, line continuations, flags and heredocs,
//! producing one [`Node`] per instruction with its line number.

use crate::{expand, Error, Result, MAX_DOCKERFILE_BYTES, MAX_INSTRUCTIONS};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// `# escape=` (default `\`).
    pub escape: char,
    /// `# syntax=`, recorded but not acted on.
    pub syntax: Option<String>,
    /// Every instruction in file order.
    pub nodes: Vec<Node>,
}

/// One instruction: keyword, `--flags`, the rest of its line and its heredocs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// The keyword, upper-cased.
    pub keyword: String,
    /// `--name=value` flags before the arguments, as written.
    pub flags: Vec<String>,
    /// The arguments after the flags, continuations joined.
    pub rest: String,
    /// Heredoc bodies referenced by `<<WORD` in `rest`.
    pub heredocs: Vec<Heredoc>,
    /// The instruction as written (continuations joined), for history and messages.
    pub original: String,
}

/// A heredoc (`<<EOF ... EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word.
    pub name: String,
    /// The body, each line ending with a newline.
    pub content: String,
    /// False when the delimiter was quoted: no variable expansion in the body.
    pub expand: bool,
}

const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Parses a Dockerfile's text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Dockerfile> {
    parse_inner(text).map_err(|mut e| {
        e.file = file.to_string();
        e
    })
}

fn parse_inner(text: &str) -> Result<Dockerfile> {
    if text.len() > MAX_DOCKERFILE_BYTES {
        return Err(Error::new(0, too_large(text.len() as u64)));
    }
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut escape = '\\';
    let mut syntax = None;
    let mut i = 0;
    // Parser directives: `# key=value` lines at the very top.
    let mut seen = Vec::new();
    while i < lines.len() {
        let Some(d) = directive(lines[i]) else { break };
        let (k, v) = d;
        if seen.contains(&k) {
            return Err(Error::new(
                i + 1,
                format!("only one {k} parser directive can be used"),
            ));
        }
        match k.as_str() {
            "escape" => {
                escape = match v.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(Error::new(
                            i + 1,
                            format!("invalid escape token '{v}' does not match ` or \\"),
                        ))
                    }
                }
            }
            "syntax" => syntax = Some(v.clone()),
            _ => break,
        }
        seen.push(k);
        i += 1;
    }
    let mut nodes = Vec::new();
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i;
        if nodes.len() == MAX_INSTRUCTIONS {
            return Err(Error::new(
                start + 1,
                format!("too many instructions: berth builds at most {MAX_INSTRUCTIONS}"),
            ));
        }
        // Join continuation lines; comment and empty lines inside are dropped.
        let mut logical = String::new();
        loop {
            let line = lines[i];
            i += 1;
            let t = line.trim_end();
            match t.strip_suffix(escape) {
                Some(body) if i < lines.len() => {
                    logical.push_str(body);
                    while i < lines.len() {
                        let n = lines[i].trim_start();
                        if n.is_empty() || n.starts_with('#') {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    if i >= lines.len() {
                        break;
                    }
                }
                Some(body) => {
                    logical.push_str(body);
                    break;
                }
                None => {
                    logical.push_str(line);
                    break;
                }
            }
        }
        let mut node = split_node(logical.trim(), start + 1)?;
        check_nesting(&node, escape).map_err(|m| Error::new(start + 1, m))?;
        if matches!(node.keyword.as_str(), "RUN" | "COPY" | "ADD") {
            for (name, strip, expand) in heredoc_markers(&node.rest) {
                let mut content = String::new();
                let mut closed = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    let l = if strip { l.trim_start_matches('\t') } else { l };
                    if l == name {
                        closed = true;
                        break;
                    }
                    content.push_str(l);
                    content.push('\n');
                }
                if !closed {
                    return Err(Error::new(
                        start + 1,
                        format!("unterminated heredoc {name}"),
                    ));
                }
                node.heredocs.push(Heredoc {
                    name,
                    content,
                    expand,
                });
            }
        }
        for h in node.heredocs.iter().filter(|h| h.expand) {
            expand::check_nesting(&h.content, escape).map_err(|m| Error::new(start + 1, m))?;
        }
        nodes.push(node);
    }
    Ok(Dockerfile {
        escape,
        syntax,
        nodes,
    })
}

/// The error for a Dockerfile of `len` bytes, over [`MAX_DOCKERFILE_BYTES`].
pub fn too_large(len: u64) -> String {
    format!("the Dockerfile is {len} bytes; berth accepts at most {MAX_DOCKERFILE_BYTES}")
}

/// Instructions whose arguments the builder expands (their flags are expanded everywhere).
const EXPANDING: &[&str] = &[
    "ADD",
    "ARG",
    "COPY",
    "ENV",
    "EXPOSE",
    "FROM",
    "LABEL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Refuses substitutions nested deeper than the expansion allows, before any step runs.
fn check_nesting(node: &Node, escape: char) -> std::result::Result<(), String> {
    if EXPANDING.contains(&node.keyword.as_str()) {
        expand::check_nesting(&node.rest, escape)?;
    }
    node.flags
        .iter()
        .try_for_each(|f| expand::check_nesting(f, escape))
}

/// `# key=value` when `line` is a parser directive.
fn directive(line: &str) -> Option<(String, String)> {
    let body = line.trim_start().strip_prefix('#')?;
    let (k, v) = body.split_once('=')?;
    let k = k.trim().to_ascii_lowercase();
    if k.is_empty() || k.contains(char::is_whitespace) {
        return None;
    }
    Some((k, v.trim().to_string()))
}

/// Splits one logical line into keyword, flags and the rest.
pub fn split_node(line: &str, lineno: usize) -> Result<Node> {
    let (kw, rest) = match line.find(char::is_whitespace) {
        Some(p) => (&line[..p], line[p..].trim_start()),
        None => (line, ""),
    };
    let keyword = kw.to_ascii_uppercase();
    if !KEYWORDS.contains(&keyword.as_str()) {
        return Err(Error::new(lineno, format!("unknown instruction: {}", kw)));
    }
    let mut flags = Vec::new();
    let mut rest = rest;
    if matches!(
        keyword.as_str(),
        "FROM" | "RUN" | "COPY" | "ADD" | "HEALTHCHECK"
    ) {
        while let Some(f) = rest.strip_prefix("--") {
            if f.is_empty() || f.starts_with(char::is_whitespace) {
                break;
            }
            let end = f.find(char::is_whitespace).unwrap_or(f.len());
            flags.push(format!("--{}", &f[..end]));
            rest = f[end..].trim_start();
        }
    }
    Ok(Node {
        line: lineno,
        keyword,
        flags,
        rest: rest.to_string(),
        heredocs: Vec::new(),
        original: line.to_string(),
    })
}

/// The heredoc markers of a RUN/COPY/ADD line: (word, strip tabs, expand).
fn heredoc_markers(rest: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let b = rest.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'<' && b[i + 1] == b'<' && b.get(i + 2) != Some(&b'<') {
            let mut j = i + 2;
            let strip = b.get(j) == Some(&b'-');
            if strip {
                j += 1;
            }
            let quote = match b.get(j) {
                Some(&q) if q == b'"' || q == b'\'' => {
                    j += 1;
                    Some(q)
                }
                _ => None,
            };
            let s = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if j > s && (quote.is_none() || b.get(j) == quote.as_ref()) {
                out.push((rest[s..j].to_string(), strip, quote.is_none()));
                i = j + usize::from(quote.is_some());
                continue;
            }
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_comments_and_flags() {
        let df = parse(
            "# syntax=docker/dockerfile:1\nFROM busybox AS base\n# c\nRUN echo a \\\n  # inner comment\n\n  && echo b\ncopy --chown=1:2 --from=base a b\n",
            "Dockerfile",
        )
        .unwrap();
        assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(df.nodes.len(), 3);
        assert_eq!(df.nodes[1].keyword, "RUN");
        assert_eq!(df.nodes[1].line, 4);
        assert_eq!(df.nodes[1].rest, "echo a   && echo b");
        assert_eq!(df.nodes[2].keyword, "COPY");
        assert_eq!(df.nodes[2].flags, vec!["--chown=1:2", "--from=base"]);
        assert_eq!(df.nodes[2].rest, "a b");
        assert_eq!(df.nodes[2].line, 8);
    }

    #[test]
    fn escape_directive() {
        let df = parse("# escape=`\nFROM x\nRUN dir c:\\ `\n  && echo\n", "D").unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(df.nodes[1].rest, "dir c:\\   && echo");
        let e = parse("# escape=x\nFROM x\n", "D").unwrap_err();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn unknown_instruction_names_file_and_line() {
        let e = parse("FROM x\n\nFOO bar\n", "my.Dockerfile").unwrap_err();
        assert_eq!(e.to_string(), "my.Dockerfile:3: unknown instruction: FOO");
    }

    #[test]
    fn heredocs() {
        let df = parse(
            "FROM x\nRUN <<EOF\necho hi\necho $A\nEOF\nCOPY <<-\"END\" /f\n\tline $X\n\tEND\nRUN echo done\n",
            "D",
        )
        .unwrap();
        assert_eq!(df.nodes.len(), 4);
        assert_eq!(df.nodes[1].heredocs[0].content, "echo hi\necho $A\n");
        assert!(df.nodes[1].heredocs[0].expand);
        assert_eq!(df.nodes[2].heredocs[0].name, "END");
        assert_eq!(df.nodes[2].heredocs[0].content, "line $X\n");
        assert!(!df.nodes[2].heredocs[0].expand);
        assert_eq!(df.nodes[3].line, 9);
        assert!(parse("FROM x\nRUN <<EOF\necho\n", "D").is_err());
    }

    #[test]
    fn limits() {
        let at_limit = format!("FROM x\n{}", "ARG a\n".repeat(MAX_INSTRUCTIONS - 1));
        assert_eq!(parse(&at_limit, "D").unwrap().nodes.len(), MAX_INSTRUCTIONS);
        let over = format!("{at_limit}# comment\nARG b\n");
        let e = parse(&over, "D").unwrap_err();
        assert_eq!(e.line, MAX_INSTRUCTIONS + 2);
        assert_eq!(
            e.to_string(),
            format!(
                "D:{}: too many instructions: berth builds at most {MAX_INSTRUCTIONS}",
                MAX_INSTRUCTIONS + 2
            )
        );
        let mut big = "FROM x\nRUN true\n".to_string();
        big.push_str(&"#".repeat(MAX_DOCKERFILE_BYTES + 1 - big.len()));
        let e = parse(&big, "D").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "D: the Dockerfile is {} bytes; berth accepts at most {MAX_DOCKERFILE_BYTES}",
                MAX_DOCKERFILE_BYTES + 1
            )
        );
        big.pop();
        assert_eq!(parse(&big, "D").unwrap().nodes.len(), 2);
        // The Dockerfile: ARG with substitutions nested 3,000 deep.
        let deep = format!(
            "FROM x\nARG X={}x{}\n",
            "${A:-".repeat(3000),
            "}".repeat(3000)
        );
        let msg = format!(
            "variable substitution nesting deeper than {} levels",
            crate::MAX_NESTING
        );
        assert_eq!(
            parse(&deep, "D").unwrap_err().to_string(),
            format!("D:2: {msg}")
        );
        let flag = format!("FROM x\nCOPY --chown={}x /a /b\n", "${A:-".repeat(100));
        assert_eq!(
            parse(&flag, "D").unwrap_err().to_string(),
            format!("D:2: {msg}")
        );
        let heredoc = format!("FROM x\nCOPY <<EOF /f\n{}\nEOF\n", "${A:-".repeat(100));
        assert_eq!(
            parse(&heredoc, "D").unwrap_err().to_string(),
            format!("D:2: {msg}")
        );
        // RUN's shell form is the shell's to expand.
        let run = format!("FROM x\nRUN echo {}\n", "${A:-".repeat(100));
        assert!(parse(&run, "D").is_ok());
    }

    #[test]
    fn crlf_and_trailing_continuation() {
        let df = parse("FROM x\r\nRUN a \\\r\n b\r\nCMD c \\", "D").unwrap();
        assert_eq!(df.nodes[1].rest, "a  b");
        assert_eq!(df.nodes[2].rest, "c");
    }
}
