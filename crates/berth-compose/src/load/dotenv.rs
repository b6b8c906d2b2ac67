//! The `.env` / `env_file` format, read as compose-go's dotenv package reads it: `KEY=VAL`,
//! `export KEY=VAL`, `KEY: VAL`, comments, single quotes (literal), double quotes (escapes,
//! several lines), unquoted values trimmed and cut at ` #`, a bare `KEY` taken from the
//! environment, and `${VAR}` interpolation in unquoted and double-quoted values.

use std::collections::HashMap;

use super::interp;

/// The variables of `text` in the order first defined (a later definition replaces the value).
/// `${VAR}` in values reads `lookup` first, then the lines above; a bare `KEY` reads `lookup`
/// only and is `None` when unset. Errors start with `line N: `.
pub fn parse(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, Option<String>)>, String> {
    let mut vars: Vec<(String, Option<String>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut line = 1;
    let mut rest = text.strip_prefix('\u{feff}').unwrap_or(text);
    loop {
        rest = statement_start(rest, &mut line);
        if rest.is_empty() {
            return Ok(vars);
        }
        let at = line;
        let (key, after, bare) = key(rest, &mut line)?;
        if key.contains(' ') {
            return Err(format!("line {at}: key cannot contain a space"));
        }
        let value = if bare {
            rest = after;
            match lookup(&key) {
                Some(v) => Some(v),
                // Unset: an earlier definition in the file stays.
                None if index.contains_key(&key) => continue,
                None => None,
            }
        } else {
            let (value, after) = value(after, &mut line, at, &|name| {
                lookup(name).or_else(|| index.get(name).and_then(|i| vars[*i].1.clone()))
            })?;
            rest = after;
            Some(value)
        };
        match index.get(&key) {
            Some(i) => vars[*i].1 = value,
            None => {
                index.insert(key.clone(), vars.len());
                vars.push((key, value));
            }
        }
    }
}

/// compose-go's `isSpace`: blanks, but not a line break.
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

/// Skips blank space and comment lines, counting lines.
fn statement_start<'a>(mut src: &'a str, line: &mut usize) -> &'a str {
    loop {
        let mut start = None;
        for (i, c) in src.char_indices() {
            if c == '\n' {
                *line += 1;
            }
            if !c.is_whitespace() {
                start = Some(i);
                break;
            }
        }
        let Some(i) = start else {
            return "";
        };
        src = &src[i..];
        if !src.starts_with('#') {
            return src;
        }
        match src.find('\n') {
            Some(j) => src = &src[j..],
            None => return "",
        }
    }
}

/// The key of the statement at `src`, the text after its `=`/`:` (or after the line of a bare
/// key), and whether it is a bare key.
fn key<'a>(mut src: &'a str, line: &mut usize) -> Result<(String, &'a str, bool), String> {
    let at = *line;
    if let Some(after) = src.strip_prefix("export") {
        if after.starts_with(['\t', '\n', '\u{c}', '\r', ' ']) {
            src = after.trim_start_matches(is_space);
        }
    }
    if src.is_empty() {
        return Err(format!("line {at}: zero length string"));
    }
    let mut end = None;
    for (i, c) in src.char_indices() {
        match c {
            c if is_space(c) => {}
            '=' | ':' | '\n' => {
                end = Some((i, c));
                break;
            }
            '_' | '.' | '-' | '[' | ']' => {}
            c if c.is_alphabetic() || c.is_numeric() => {}
            c => {
                let first_line = src.split('\n').next().unwrap_or(src);
                return Err(format!(
                    "line {at}: unexpected character {:?} in variable name {first_line:?}",
                    c.to_string()
                ));
            }
        }
    }
    // compose-go reads a bare key on the last line without a line break as the value of an
    // empty key; it is read here as the bare key it is.
    let (key, offset, bare) = match end {
        Some((i, c)) => (&src[..i], i + 1, c == '\n'),
        None => (src, src.len(), true),
    };
    if matches!(end, Some((_, '\n'))) {
        *line += 1;
    }
    let key = key.trim_end_matches(char::is_whitespace).to_string();
    Ok((key, src[offset..].trim_start_matches(is_space), bare))
}

/// The value at `src` and the text after it. `at` is the statement's line, for errors.
fn value<'a>(
    src: &'a str,
    line: &mut usize,
    at: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, &'a str), String> {
    let expand = |v: &str| {
        let mut warnings = Vec::new();
        interp::substitute(v, lookup, &mut warnings).map_err(|e| format!("line {at}: {e}"))
    };
    let b = src.as_bytes();
    let quote = match b.first() {
        Some(&q @ (b'"' | b'\'')) => q,
        _ => {
            let (v, rest) = src.split_once('\n').unwrap_or((src, ""));
            *line += 1;
            let v = v.split(" #").next().unwrap_or(v);
            return Ok((expand(v.trim_end_matches(char::is_whitespace))?, rest));
        }
    };
    let mut chars = Vec::new();
    let mut escaped = false;
    for (i, &c) in b.iter().enumerate().skip(1) {
        if c == b'\n' {
            *line += 1;
        }
        if c != quote {
            if !escaped && c == b'\\' {
                escaped = true;
                continue;
            }
            if escaped {
                escaped = false;
                chars.push(b'\\');
            }
            chars.push(c);
            continue;
        }
        if escaped {
            // `\"` in double quotes, `\'` in single quotes: the quote itself.
            escaped = false;
            chars.push(c);
            continue;
        }
        let v = String::from_utf8_lossy(&chars).into_owned();
        let v = if quote == b'"' {
            expand(&unescape(&v))?
        } else {
            v
        };
        return Ok((v, &src[i + 1..]));
    }
    let end = src.find('\n').unwrap_or(src.len());
    Err(format!(
        "line {at}: unterminated quoted value {}",
        &src[..end]
    ))
}

/// Shell escapes in a double-quoted value: `\a \b \f \n \r \t \v \" \\`, `\0ooo` (octal), and
/// `\$` (kept as `$$` so interpolation leaves a `$`). Anything else keeps its backslash.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let Some(&n) = chars.peek().filter(|_| c == '\\') else {
            out.push(c);
            continue;
        };
        let simple = match n {
            'a' => Some("\u{7}"),
            'b' => Some("\u{8}"),
            'f' => Some("\u{c}"),
            'n' => Some("\n"),
            'r' => Some("\r"),
            't' => Some("\t"),
            'v' => Some("\u{b}"),
            '"' => Some("\""),
            '\\' => Some("\\"),
            '$' => Some("$$"),
            // Matched by compose-go's pattern but not an escape it can decode: kept.
            'c' => Some("\\c"),
            _ => None,
        };
        if let Some(text) = simple {
            chars.next();
            out.push_str(text);
            continue;
        }
        if n != '0' {
            out.push(c);
            continue;
        }
        chars.next();
        let mut digits = String::new();
        while digits.len() < 3 {
            match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    digits.push(*d);
                    chars.next();
                }
                _ => break,
            }
        }
        let octal = (digits.len() == 3)
            .then(|| u32::from_str_radix(&digits, 8).ok())
            .flatten()
            .filter(|v| *v <= 0xff)
            .and_then(char::from_u32);
        match octal {
            Some(ch) => out.push(ch),
            None => {
                out.push_str("\\0");
                out.push_str(&digits);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "SHELL_VAR" => Some("from-shell".into()),
            "OPTION_A" => Some("5".into()),
            _ => None,
        }
    }

    fn read(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<(String, Option<String>)> {
        parse(text, lookup).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn value_of(text: &str, key: &str) -> Option<String> {
        read(text, &none)
            .into_iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("{text:?}: no {key}"))
            .1
    }

    #[test]
    fn lines_read_as_compose_go() {
        let cases: &[(&str, &str, &str)] = &[
            ("FOO=bar", "FOO", "bar"),
            ("FOO =bar", "FOO", "bar"),
            ("FOO= bar", "FOO", "bar"),
            (" KEY =value", "KEY", "value"),
            ("\tKEY=value", "KEY", "value"),
            ("FOO=\"bar\"", "FOO", "bar"),
            ("FOO='bar'", "FOO", "bar"),
            (r#"FOO="escaped\"bar""#, "FOO", "escaped\"bar"),
            (r#"FOO="\"quoted\"""#, "FOO", "\"quoted\""),
            (r#"FOO="'d'""#, "FOO", "'d'"),
            ("OPTION_A: 1", "OPTION_A", "1"),
            ("OPTION_A: Foo=bar", "OPTION_A", "Foo=bar"),
            ("OPTION_A=1:B", "OPTION_A", "1:B"),
            ("export OPTION_A=2", "OPTION_A", "2"),
            ("export OPTION_B='\\n'", "OPTION_B", "\\n"),
            ("export exportFoo=2", "exportFoo", "2"),
            ("exportFOO=2", "exportFOO", "2"),
            ("export_FOO =2", "export_FOO", "2"),
            ("export.FOO= 2", "export.FOO", "2"),
            ("export\tOPTION_A=2", "OPTION_A", "2"),
            ("  export OPTION_A=2", "OPTION_A", "2"),
            ("export OPTION_A=\"export A\"", "OPTION_A", "export A"),
            (r#"FOO="bar\nbaz""#, "FOO", "bar\nbaz"),
            (r"FOO=a\tb", "FOO", r"a\tb"),
            (r#"FOO="a\tb""#, "FOO", "a\tb"),
            (
                r#"KEY="Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\Z\0123Z""#,
                "KEY",
                "Z\u{7}Z\u{8}Z\u{c}Z\nZ\rZ\tZ\u{b}Z\\ZSZ",
            ),
            (r#"KEY="\0123""#, "KEY", "S"),
            (r#"KEY="\012""#, "KEY", r"\012"),
            (r#"KEY="\x07""#, "KEY", r"\x07"),
            (r#"KEY="\u12e4""#, "KEY", r"\u12e4"),
            (r#"FOO="bar\n\ b\az""#, "FOO", "bar\n\\ b\u{7}z"),
            (r#"FOO="bar\\\n\ b\az""#, "FOO", "bar\\\n\\ b\u{7}z"),
            (r#"FOO="bar\nbaz\\""#, "FOO", "bar\nbaz\\"),
            ("FOO.BAR=foobar", "FOO.BAR", "foobar"),
            ("VAR-WITH-DASHES=dashes", "VAR-WITH-DASHES", "dashes"),
            ("a[1]=c", "a[1]", "c"),
            ("árvíztűrő=ÁRVÍZ", "árvíztűrő", "ÁRVÍZ"),
            ("FOO=foobar=", "FOO", "foobar="),
            ("FOO=bar ", "FOO", "bar"),
            ("FOO=bar # this is foo", "FOO", "bar"),
            ("FOO=bar #", "FOO", "bar"),
            (
                "FOO=123#not-an-inline-comment",
                "FOO",
                "123#not-an-inline-comment",
            ),
            (r#"FOO="bar#baz" # comment"#, "FOO", "bar#baz"),
            ("FOO='bar#baz' # comment", "FOO", "bar#baz"),
            (r##"FOO="bar#baz"#"##, "FOO", "bar#baz"),
            ("OPTION_K='Let\\'s go!'", "OPTION_K", "Let's go!"),
            (
                "OPTION_I = \"echo 'asd'\" # Inline comment",
                "OPTION_I",
                "echo 'asd'",
            ),
            ("OPTION_F = \n", "OPTION_F", ""),
            ("OPTION_G=", "OPTION_G", ""),
            ("=\"value\"", "", "value"),
            ("\u{feff}BOM=1", "BOM", "1"),
            ("CRLF=1\r\nX=2\r\n", "CRLF", "1"),
            (
                "FOO=\"first line\nsecond line\"",
                "FOO",
                "first line\nsecond line",
            ),
            ("FOO='first\nsecond'\nBAR=1", "FOO", "first\nsecond"),
        ];
        for (text, key, want) in cases {
            assert_eq!(value_of(text, key).as_deref(), Some(*want), "{text:?}");
        }
    }

    #[test]
    fn whole_files_keep_order_and_comments() {
        let text = "\
# a comment
OPTION_A=1

  # indented comment
OPTION_B=2
OPTION_C= 3
OPTION_D =4
OPTION_E = 5
OPTION_F = 
OPTION_G=
OPTION_H = my string # Inline comment
OPTION_A=again
";
        let got = read(text, &none);
        let want: Vec<(String, Option<String>)> = [
            ("OPTION_A", "again"),
            ("OPTION_B", "2"),
            ("OPTION_C", "3"),
            ("OPTION_D", "4"),
            ("OPTION_E", "5"),
            ("OPTION_F", ""),
            ("OPTION_G", ""),
            ("OPTION_H", "my string"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), Some(v.to_string())))
        .collect();
        assert_eq!(got, want);
        for blank in ["", "\n", "\r\n", "\t\t ", "# Comment", "\t # comment"] {
            assert!(read(blank, &none).is_empty(), "{blank:?}");
        }
    }

    #[test]
    fn bare_keys_come_from_the_lookup() {
        let got = read("SHELL_VAR\nMISSING\nX=1\nX\n  export OPTION_A\nLAST", &env);
        assert_eq!(
            got,
            vec![
                ("SHELL_VAR".to_string(), Some("from-shell".to_string())),
                ("MISSING".to_string(), None),
                ("X".to_string(), Some("1".to_string())),
                ("OPTION_A".to_string(), Some("5".to_string())),
                ("LAST".to_string(), None),
            ]
        );
    }

    #[test]
    fn values_are_interpolated_from_the_lookup_then_earlier_lines() {
        let text = "\
OPTION_A=1
OPTION_B=${OPTION_A}
OPTION_C=$OPTION_B
OPTION_D=${OPTION_A}_${OPTION_B}
OPTION_E=${OPTION_NOT_DEFINED}
LOCAL=x
F=\"quote $LOCAL ${SHELL_VAR}\"
G='quote $LOCAL'
H=\"foo\\$LOCAL\"
I=\"foo\\${LOCAL} ${LOCAL}\"
J=$$LOCAL
K=${NOPE:-${LOCAL}-d}
";
        let got = read(text, &env);
        let get = |k: &str| {
            got.iter()
                .find(|(key, _)| key == k)
                .and_then(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {k}"))
        };
        // OPTION_A is set in the lookup (the shell), which wins over the file's own line.
        let cases = [
            ("OPTION_A", "1"),
            ("OPTION_B", "5"),
            ("OPTION_C", "5"),
            ("OPTION_D", "5_5"),
            ("OPTION_E", ""),
            ("F", "quote x from-shell"),
            ("G", "quote $LOCAL"),
            ("H", "foo$LOCAL"),
            ("I", "foo${LOCAL} x"),
            ("J", "$LOCAL"),
            ("K", "x-d"),
        ];
        for (k, want) in cases {
            assert_eq!(get(k), want, "{k}");
        }
        let got = read("A=1\nB=${A}", &none);
        assert_eq!(got[1].1.as_deref(), Some("1"));
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, &str)] = &[
            (
                "# some comments\nfoo=\"\n  a\n  multine\n  value\n\"\nINVALID LINE\nzot=qix",
                "line 7: key cannot contain a space",
            ),
            (
                "%!(EXTRA string)=foo",
                "line 1: unexpected character \"%\" in variable name \"%!(EXTRA string)=foo\"",
            ),
            (
                "A=1\nlol$wut",
                "line 2: unexpected character \"$\" in variable name \"lol$wut\"",
            ),
            ("A=1\nKEY=\"", "line 2: unterminated quoted value \""),
            (
                "KEY=\"value\nB=2",
                "line 1: unterminated quoted value \"value",
            ),
            (
                "KEY=\"value\\\"",
                "line 1: unterminated quoted value \"value\\\"",
            ),
            (
                "KEY='value\\'",
                "line 1: unterminated quoted value 'value\\'",
            ),
            ("KEY='value\"", "line 1: unterminated quoted value 'value\""),
            (
                "\n\nKEY=${NEED:?set it}",
                "line 3: required variable NEED is missing a value: set it",
            ),
            ("KEY=\"${\"", "line 1: Invalid template: \"${\""),
            ("export   ", "line 1: zero length string"),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text, &none).err().as_deref(), Some(*want), "{text:?}");
        }
    }
}
