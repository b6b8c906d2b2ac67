//! `.dockerignore` with Docker's rules: `#` comments, patterns cleaned like Go's
//! `filepath.Clean` with a leading `/` dropped, `*`, `?`, `[...]`, `**` across directories,
//! `!` exceptions, a pattern also matching everything under a matched directory, last match wins.
//! The same glob matching serves COPY/ADD sources.

/// One `.dockerignore` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The cleaned pattern.
    pub pattern: String,
    /// A `!` line: re-includes what earlier lines excluded.
    pub exclusion: bool,
}

/// The patterns of a `.dockerignore` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matcher {
    pub patterns: Vec<Pattern>,
}

impl Matcher {
    /// Parses `.dockerignore` text.
    pub fn parse(text: &str) -> Matcher {
        let mut patterns = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
            }
            let mut cleaned = clean(p);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned = cleaned[1..].to_string();
            }
            if cleaned.is_empty() || (!exclusion && p.is_empty()) {
                continue;
            }
            patterns.push(Pattern {
                pattern: cleaned,
                exclusion,
            });
        }
        Matcher { patterns }
    }

    /// Adds `!name` so that `name` is always kept (the docker CLI keeps the Dockerfile and
    /// `.dockerignore` this way).
    pub fn keep(&mut self, name: &str) {
        self.patterns.push(Pattern {
            pattern: clean(name),
            exclusion: true,
        });
    }

    /// Whether `path` (relative to the context, `/`-separated) is excluded.
    pub fn excluded(&self, path: &str) -> bool {
        let path = clean(path);
        let parents: Vec<&str> = path
            .match_indices('/')
            .map(|(i, _)| &path[..i])
            .chain(std::iter::once(path.as_str()))
            .collect();
        let mut excluded = false;
        for p in &self.patterns {
            // Only a pattern that could flip the result needs checking.
            if p.exclusion != excluded {
                continue;
            }
            if parents.iter().any(|q| glob(&p.pattern, q)) {
                excluded = !p.exclusion;
            }
        }
        excluded
    }

    /// Whether some `!` pattern could re-include something under the excluded directory `dir`
    /// (so a walker must still descend into it).
    pub fn may_reinclude_under(&self, dir: &str) -> bool {
        let dir = clean(dir);
        self.patterns.iter().any(|p| {
            p.exclusion
                && (p.pattern.starts_with(&format!("{dir}/"))
                    || p.pattern.contains('*')
                    || p.pattern.contains('?')
                    || p.pattern.contains('['))
        })
    }
}

/// Go's `filepath.Clean` for `/`-separated paths; `""` for `.`.
pub fn clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|s| *s != "..") {
                    out.pop();
                } else if !abs {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if abs {
        format!("/{joined}")
    } else {
        joined
    }
}

/// One element of a glob.
enum Token {
    /// A character matched as is (also one escaped with `\\`, and a `[` that opens no class).
    Char(char),
    /// `?`: any character but `/`.
    Any,
    /// `[...]`, its body starting at this index of the pattern.
    Class(usize),
    /// `*`: any run of characters without `/`.
    Star,
    /// `**` not followed by `/`: any run of characters.
    Stars,
    /// `**/`: zero or more leading directories.
    StarsSlash,
}

fn tokens(p: &[char]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let (t, used) = match p[i] {
            '*' if p.get(i + 1) == Some(&'*') => {
                if p.get(i + 2) == Some(&'/') {
                    (Token::StarsSlash, 3)
                } else {
                    (Token::Stars, 2)
                }
            }
            '*' => (Token::Star, 1),
            '?' => (Token::Any, 1),
            '[' => match class(&p[i + 1..], 'a') {
                Some((_, used)) => (Token::Class(i + 1), 1 + used),
                None => (Token::Char('['), 1),
            },
            '\\' if i + 1 < p.len() => (Token::Char(p[i + 1]), 2),
            c => (Token::Char(c), 1),
        };
        out.push(t);
        i += used;
    }
    out
}

/// Matches `name` against a glob with Docker's `**` extension. Time is bounded by the
/// pattern's length times the name's (no backtracking: `*` after `*` is not exponential),
/// memory by the name's.
pub fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = name.chars().collect();
    let n = s.len();
    // `next[i]`: whether the tokens after the current one match `s[i..]`; the tokens are
    // taken from the last, so at the end `next` is for the whole pattern.
    let mut next: Vec<bool> = (0..=n).map(|i| i == n).collect();
    let mut cur = vec![false; n + 1];
    for t in tokens(&p).iter().rev() {
        // For `**/`: whether some `/` at or after `i` is followed by a match of the rest.
        let mut slash_then_rest = false;
        for i in (0..=n).rev() {
            let c = s.get(i).copied();
            cur[i] = match t {
                Token::Char(x) => c == Some(*x) && next[i + 1],
                Token::Any => c.is_some_and(|c| c != '/') && next[i + 1],
                Token::Class(at) => {
                    c.is_some_and(|c| class(&p[*at..], c).is_some_and(|(ok, _)| ok)) && next[i + 1]
                }
                Token::Star => next[i] || (c.is_some_and(|c| c != '/') && cur[i + 1]),
                Token::Stars => next[i] || (c.is_some() && cur[i + 1]),
                Token::StarsSlash => {
                    if c == Some('/') && next[i + 1] {
                        slash_then_rest = true;
                    }
                    next[i] || slash_then_rest
                }
            };
        }
        std::mem::swap(&mut cur, &mut next);
    }
    next[0]
}

/// Matches `x` against a `[...]` class body; (matched, chars consumed including `]`).
fn class(p: &[char], x: char) -> Option<(bool, usize)> {
    let mut i = 0;
    let negate = matches!(p.first(), Some('^') | Some('!'));
    if negate {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    loop {
        let c = *p.get(i)?;
        if c == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = if c == '\\' {
            i += 1;
            *p.get(i)?
        } else {
            c
        };
        i += 1;
        if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|&h| h != ']') {
            let hi = p[i + 1];
            i += 2;
            if lo <= x && x <= hi {
                found = true;
            }
        } else if lo == x {
            found = true;
        }
    }
    Some((found != negate && x != '/', i))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (fuzz/ dockerignore): runs of `*` took exponential time, so a
    /// `.dockerignore` line or a COPY source could hang a build.
    #[test]
    fn many_stars_match_in_polynomial_time() {
        let pattern = format!("{}~~~~{}", "*".repeat(24), "*".repeat(20));
        let name = "a".repeat(400);
        assert!(!glob(&pattern, &name));
        assert!(glob(&pattern, &format!("{name}~~~~{name}")));
        let stars = format!("{}x", "**".repeat(30));
        assert!(!glob(&stars, &"a/".repeat(200)));
        let slashes = format!("{}x", "**/".repeat(30));
        assert!(glob(&slashes, &format!("{}x", "a/".repeat(200))));
    }

    #[test]
    fn clean_like_go() {
        assert_eq!(clean("./a//b/../c/"), "a/c");
        assert_eq!(clean("/a/../../b"), "/b");
        assert_eq!(clean("."), "");
        assert_eq!(clean("../x"), "../x");
    }

    #[test]
    fn globs() {
        assert!(glob("*.go", "main.go"));
        assert!(!glob("*.go", "a/main.go"));
        assert!(glob("**/*.go", "main.go"));
        assert!(glob("**/*.go", "a/b/main.go"));
        assert!(glob("a/**", "a/b/c"));
        assert!(glob("a/**/z", "a/z"));
        assert!(glob("a/**/z", "a/b/c/z"));
        assert!(!glob("a/**/z", "a/b/zz"));
        assert!(glob("file?.txt", "file1.txt"));
        assert!(!glob("file?.txt", "file/.txt"));
        assert!(glob("[a-c]x", "bx"));
        assert!(!glob("[^a-c]x", "bx"));
        assert!(glob("\\*", "*"));
        assert!(glob("[", "["));
        assert!(!glob("[a", "a"));
        assert!(glob("**", "a/b"));
        assert!(glob("a**z", "a/b/z"));
        assert!(glob("**/", "/"));
        assert!(glob("x\\", "x\\"));
    }

    #[test]
    fn dockerignore_rules() {
        let m = Matcher::parse(
            "# comment\n/secret\n*.log\n!keep.log\nnode_modules\n**/*.tmp\n docs/*.md \n!docs/README.md\n",
        );
        assert!(m.excluded("secret"));
        assert!(m.excluded("secret/inner/file"));
        assert!(m.excluded("a.log"));
        assert!(!m.excluded("keep.log"));
        assert!(!m.excluded("sub/a.log"));
        assert!(m.excluded("node_modules/x/y.js"));
        assert!(m.excluded("deep/dir/x.tmp"));
        assert!(m.excluded("docs/a.md"));
        assert!(!m.excluded("docs/README.md"));
        assert!(!m.excluded("src/main.c"));
        assert!(m.may_reinclude_under("docs"));
        assert!(!Matcher::parse("node_modules\n").may_reinclude_under("node_modules"));
    }

    #[test]
    fn last_match_wins_and_keep() {
        let mut m = Matcher::parse("*\n!src\nsrc/gen\nDockerfile\n");
        assert!(m.excluded("x"));
        assert!(!m.excluded("src/a.c"));
        assert!(m.excluded("src/gen/b.c"));
        assert!(m.excluded("Dockerfile"));
        m.keep("Dockerfile");
        assert!(!m.excluded("Dockerfile"));
    }
}
