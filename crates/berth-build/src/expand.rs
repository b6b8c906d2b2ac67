//! Docker's word processing for the instructions that expand variables: quotes, the escape
//! character, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alt}`, `${VAR:?msg}` (and the
//! forms without `:`), with optional splitting into words. Nesting is limited to
//! [`MAX_NESTING`](crate::MAX_NESTING) levels and what substitutions add to one argument to
//! [`MAX_EXPANDED_BYTES`](crate::MAX_EXPANDED_BYTES), so that no input can exhaust the stack
//! or memory.

use crate::{MAX_EXPANDED_BYTES, MAX_NESTING};

/// Looks a variable up; `None` when unset.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Expands `s` as one word (quotes removed, no splitting).
pub fn word(s: &str, escape: char, lookup: Lookup) -> Result<String, String> {
    word_at(s, escape, lookup, 0)
}

fn word_at(s: &str, escape: char, lookup: Lookup, nest: usize) -> Result<String, String> {
    Ok(run(s, escape, false, lookup, nest)?
        .into_iter()
        .next()
        .unwrap_or_default())
}

/// Expands `s` and splits it into words on unquoted whitespace; words that expand to nothing
/// (and were not quoted) are dropped.
pub fn words(s: &str, escape: char, lookup: Lookup) -> Result<Vec<String>, String> {
    run(s, escape, true, lookup, 0)
}

/// Expands only the variables of `s`, keeping quotes and whitespace (heredoc bodies); the
/// escape character protects a `$`.
pub fn vars_only(s: &str, escape: char, lookup: Lookup) -> Result<String, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut added = Added(0);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c == escape && chars.get(i) == Some(&'$') {
            out.push('$');
            i += 1;
        } else if c == '$' {
            let v = variable(&chars, &mut i, escape, lookup, 0)?;
            added.add(v.len())?;
            out.push_str(&v);
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Bytes that substitutions added to one expansion, checked against the limit.
struct Added(usize);

impl Added {
    fn add(&mut self, n: usize) -> Result<(), String> {
        self.0 = self.0.saturating_add(n);
        if self.0 > MAX_EXPANDED_BYTES {
            return Err(format!(
                "variable substitution makes a value longer than {MAX_EXPANDED_BYTES} bytes"
            ));
        }
        Ok(())
    }
}

/// Checks without expanding anything that the substitutions of `s` nest at most
/// [`MAX_NESTING`] levels deep, counting as [`word`] does (so that a Dockerfile is refused
/// before its build starts rather than at the step).
pub fn check_nesting(s: &str, escape: char) -> Result<(), String> {
    let mut depth = 0usize;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == escape {
            chars.next();
        } else if (c == '$' && chars.peek() == Some(&'{')) || (c == '{' && depth > 0) {
            if c == '$' {
                chars.next();
            }
            depth += 1;
            if depth > MAX_NESTING {
                return Err(too_deep());
            }
        } else if c == '}' && depth > 0 {
            depth -= 1;
        }
    }
    Ok(())
}

fn too_deep() -> String {
    format!("variable substitution nesting deeper than {MAX_NESTING} levels")
}

/// Splits `s` into words like [`words`] but without expanding variables or removing quotes
/// (for `ENV`/`LABEL` pairs, which are split first and expanded per value).
pub fn split_raw(s: &str, escape: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == escape && q == '"' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            None => {
                cur.push(c);
                if c == escape {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn run(
    s: &str,
    escape: char,
    split: bool,
    lookup: Lookup,
    nest: usize,
) -> Result<Vec<String>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut added = Added(0);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c == escape {
            match chars.get(i) {
                Some(&n) => {
                    cur.push(n);
                    i += 1;
                }
                None => cur.push(c),
            }
        } else if c == '\'' {
            quoted = true;
            loop {
                match chars.get(i) {
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(&n) => {
                        cur.push(n);
                        i += 1;
                    }
                    None => {
                        return Err(
                            "unexpected end of statement while looking for matching single-quote"
                                .into(),
                        )
                    }
                }
            }
        } else if c == '"' {
            quoted = true;
            loop {
                match chars.get(i) {
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(&e) if e == escape => {
                        match chars.get(i + 1) {
                            Some(&n) if n == '"' || n == '$' || n == escape => cur.push(n),
                            Some(&n) => {
                                cur.push(e);
                                cur.push(n);
                            }
                            None => cur.push(e),
                        }
                        i += 2;
                    }
                    Some('$') => {
                        i += 1;
                        let v = variable(&chars, &mut i, escape, lookup, nest)?;
                        added.add(v.len())?;
                        cur.push_str(&v);
                    }
                    Some(&n) => {
                        cur.push(n);
                        i += 1;
                    }
                    None => {
                        return Err(
                            "unexpected end of statement while looking for matching double-quote"
                                .into(),
                        )
                    }
                }
            }
        } else if c == '$' {
            let v = variable(&chars, &mut i, escape, lookup, nest)?;
            added.add(v.len())?;
            if split {
                // Unquoted values split into words like the rest of the line.
                for vc in v.chars() {
                    if vc.is_whitespace() {
                        if !cur.is_empty() || quoted {
                            out.push(std::mem::take(&mut cur));
                        }
                        quoted = false;
                    } else {
                        cur.push(vc);
                    }
                }
            } else {
                cur.push_str(&v);
            }
        } else if split && c.is_whitespace() {
            if !cur.is_empty() || quoted {
                out.push(std::mem::take(&mut cur));
            }
            quoted = false;
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() || quoted || !split {
        out.push(cur);
    }
    Ok(out)
}

fn is_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands the variable after a `$` at `chars[*i]`, advancing `i`; `nest` is how many
/// substitutions this one is inside.
fn variable(
    chars: &[char],
    i: &mut usize,
    escape: char,
    lookup: Lookup,
    nest: usize,
) -> Result<String, String> {
    match chars.get(*i) {
        Some('{') => {
            *i += 1;
            let start = *i;
            while chars.get(*i).is_some_and(|&c| is_name(c)) {
                *i += 1;
            }
            let name: String = chars[start..*i].iter().collect();
            if name.is_empty() {
                return Err("bad substitution".into());
            }
            match chars.get(*i) {
                Some('}') => {
                    *i += 1;
                    Ok(lookup(&name).unwrap_or_default())
                }
                Some(&c) => {
                    let colon = c == ':';
                    if colon {
                        *i += 1;
                    }
                    let op = chars.get(*i).copied().ok_or("missing '}'")?;
                    *i += 1;
                    // The operand runs to the matching `}` (nested `${...}` allowed, up to
                    // the limit whether or not the operand is used).
                    if nest + 1 > MAX_NESTING {
                        return Err(too_deep());
                    }
                    let ws = *i;
                    let mut depth = 0;
                    loop {
                        match chars.get(*i) {
                            None => return Err(format!("missing '}}' in ${{{name}")),
                            Some('}') if depth == 0 => break,
                            Some('}') => depth -= 1,
                            Some('{') => {
                                depth += 1;
                                if nest + 1 + depth > MAX_NESTING {
                                    return Err(too_deep());
                                }
                            }
                            Some(&e) if e == escape => *i += 1,
                            _ => {}
                        }
                        *i += 1;
                    }
                    let operand: String = chars[ws..*i].iter().collect();
                    *i += 1;
                    let val = lookup(&name);
                    let set = match &val {
                        Some(v) => !colon || !v.is_empty(),
                        None => false,
                    };
                    let expand_operand = || word_at(&operand, escape, lookup, nest + 1);
                    match op {
                        '-' => {
                            if set {
                                Ok(val.unwrap_or_default())
                            } else {
                                expand_operand()
                            }
                        }
                        '+' => {
                            if set {
                                expand_operand()
                            } else {
                                Ok(String::new())
                            }
                        }
                        '?' => {
                            if set {
                                Ok(val.unwrap_or_default())
                            } else {
                                let m = expand_operand()?;
                                Err(if m.is_empty() {
                                    format!("{name}: is not allowed to be unset")
                                } else {
                                    format!("{name}: {m}")
                                })
                            }
                        }
                        other => Err(format!("unsupported modifier ({other}) in substitution")),
                    }
                }
                None => Err(format!("missing '}}' in ${{{name}")),
            }
        }
        Some(&c) if is_name(c) => {
            let start = *i;
            while chars.get(*i).is_some_and(|&c| is_name(c)) {
                *i += 1;
            }
            let name: String = chars[start..*i].iter().collect();
            Ok(lookup(&name).unwrap_or_default())
        }
        _ => Ok("$".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "A" => Some("alpha".into()),
            "E" => Some(String::new()),
            "SP" => Some("x y".into()),
            _ => None,
        }
    }

    #[test]
    fn plain_and_braced() {
        assert_eq!(word("$A/${A}-$B.", '\\', &env).unwrap(), "alpha/alpha-.");
        assert_eq!(word("cost $ 5", '\\', &env).unwrap(), "cost $ 5");
        assert_eq!(word("\\$A", '\\', &env).unwrap(), "$A");
    }

    #[test]
    fn modifiers() {
        assert_eq!(word("${B:-def}", '\\', &env).unwrap(), "def");
        assert_eq!(word("${E:-def}", '\\', &env).unwrap(), "def");
        assert_eq!(word("${E-def}", '\\', &env).unwrap(), "");
        assert_eq!(word("${A:-def}", '\\', &env).unwrap(), "alpha");
        assert_eq!(word("${A:+alt}", '\\', &env).unwrap(), "alt");
        assert_eq!(word("${B:+alt}", '\\', &env).unwrap(), "");
        assert_eq!(word("${E+alt}", '\\', &env).unwrap(), "alt");
        assert_eq!(word("${B:-${A}x}", '\\', &env).unwrap(), "alphax");
        assert_eq!(word("${B:?need B}", '\\', &env).unwrap_err(), "B: need B");
        assert!(word("${A", '\\', &env).is_err());
    }

    #[test]
    fn quotes() {
        assert_eq!(word("'$A'", '\\', &env).unwrap(), "$A");
        assert_eq!(
            word("\"$A \\\"q\\\" \\n\"", '\\', &env).unwrap(),
            "alpha \"q\" \\n"
        );
        assert!(word("\"open", '\\', &env).is_err());
    }

    #[test]
    fn heredoc_bodies() {
        assert_eq!(
            vars_only("a \"$A\" '${B:-b}' \\$A\n", '\\', &env).unwrap(),
            "a \"alpha\" 'b' $A\n"
        );
    }

    fn nested(levels: usize) -> String {
        format!("{}x{}", "${U:-".repeat(levels), "}".repeat(levels))
    }

    #[test]
    fn nesting_is_limited() {
        assert_eq!(word(&nested(MAX_NESTING), '\\', &env).unwrap(), "x");
        let msg = format!("variable substitution nesting deeper than {MAX_NESTING} levels");
        assert_eq!(word(&nested(MAX_NESTING + 1), '\\', &env).unwrap_err(), msg);
        // The Dockerfile: 3,000 levels, refused before any recursion.
        assert_eq!(word(&nested(3000), '\\', &env).unwrap_err(), msg);
        // Also when the outer variable is set and its operand would not be expanded.
        let deep = nested(3000).replacen("${U", "${A", 1);
        assert_eq!(words(&deep, '\\', &env).unwrap_err(), msg);
        assert_eq!(vars_only(&deep, '\\', &env).unwrap_err(), msg);
        assert_eq!(check_nesting(&nested(MAX_NESTING), '\\'), Ok(()));
        assert_eq!(check_nesting(&nested(3000), '\\'), Err(msg.clone()));
        assert_eq!(
            check_nesting(&nested(3000).replace("${", "\\${"), '\\'),
            Ok(())
        );
        let braces = format!(
            "${{U:-{}x{}}}",
            "{".repeat(MAX_NESTING),
            "}".repeat(MAX_NESTING)
        );
        assert_eq!(word(&braces, '\\', &env).unwrap_err(), msg);
        assert_eq!(check_nesting(&braces, '\\'), Err(msg));
    }

    #[test]
    fn expansion_size_is_limited() {
        let big = "b".repeat(MAX_EXPANDED_BYTES / 2 + 1);
        let lookup = |k: &str| (k == "BIG").then(|| big.clone());
        assert_eq!(word("$BIG", '\\', &lookup).unwrap().len(), big.len());
        let msg =
            format!("variable substitution makes a value longer than {MAX_EXPANDED_BYTES} bytes");
        assert_eq!(word("$BIG$BIG", '\\', &lookup).unwrap_err(), msg);
        assert_eq!(words("\"$BIG\" ${BIG}", '\\', &lookup).unwrap_err(), msg);
        assert_eq!(vars_only("$BIG\n$BIG", '\\', &lookup).unwrap_err(), msg);
    }

    #[test]
    fn splitting() {
        assert_eq!(
            words("a  $SP \"b c\" $B ''", '\\', &env).unwrap(),
            vec!["a", "x", "y", "b c", ""]
        );
        assert_eq!(
            split_raw("a=\"b c\" d='e f' g\\ h", '\\'),
            vec!["a=\"b c\"", "d='e f'", "g\\ h"]
        );
    }
}
