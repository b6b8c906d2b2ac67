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

/// Matches `name` against a glob with Docker's `**` extension. The pattern is compiled into
/// steps that are run over `name` as a set of positions, so neither the stack nor the time
/// grows beyond pattern length times name length whatever the pattern holds.
pub fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let steps = compile(&p);
    let accept = steps.len();
    let mut cur = Positions::new(accept + 1);
    let mut next = Positions::new(accept + 1);
    cur.add(&steps, 0);
    for x in name.chars() {
        next.clear();
        for k in 0..cur.list.len() {
            let i = cur.list[k];
            let Some(step) = steps.get(i) else { continue };
            match *step {
                Step::Char(c) if x == c => next.add(&steps, i + 1),
                Step::One if x != '/' => next.add(&steps, i + 1),
                Step::Class(at) if class(&p[at..], x).is_some_and(|(ok, _)| ok) => {
                    next.add(&steps, i + 1)
                }
                Step::Star if x != '/' => next.add(&steps, i),
                Step::Any => next.add(&steps, i),
                Step::InDirs => {
                    next.add(&steps, i);
                    if x == '/' {
                        next.add(&steps, i + 1);
                    }
                }
                _ => {}
            }
        }
        std::mem::swap(&mut cur, &mut next);
        if cur.list.is_empty() {
            return false;
        }
    }
    cur.seen[accept]
}

/// The set of pattern positions a match can be at.
struct Positions {
    list: Vec<usize>,
    seen: Vec<bool>,
}

impl Positions {
    fn new(n: usize) -> Positions {
        Positions {
            list: Vec::new(),
            seen: vec![false; n],
        }
    }

    fn clear(&mut self) {
        for &i in &self.list {
            self.seen[i] = false;
        }
        self.list.clear();
    }

    /// Adds position `i` and those after it that a star matching nothing reaches.
    fn add(&mut self, steps: &[Step], mut i: usize) {
        loop {
            if self.seen[i] {
                return;
            }
            self.seen[i] = true;
            self.list.push(i);
            match steps.get(i) {
                Some(Step::Star | Step::Any) => i += 1,
                Some(Step::Dirs) => {
                    // Into the directories, or past them (none).
                    self.add(steps, i + 1);
                    i += 2;
                }
                _ => return,
            }
        }
    }
}

/// One step of a compiled glob.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// This character.
    Char(char),
    /// `?`: one character but `/`.
    One,
    /// `[...]`: one character of the class whose body starts at this index of the pattern.
    Class(usize),
    /// `*`: any run of characters but `/`.
    Star,
    /// `**` not followed by `/`: anything.
    Any,
    /// `**/`: zero or more leading directories (nothing, or anything ending with `/`); it
    /// consumes nothing itself but leads to the [`Step::InDirs`] after it and past that.
    Dirs,
    /// Inside the directories of a `**/`: any character, until a `/` that may end them.
    InDirs,
}

fn compile(p: &[char]) -> Vec<Step> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        let (step, used) = match p[i] {
            '*' if p.get(i + 1) == Some(&'*') => {
                if p.get(i + 2) == Some(&'/') {
                    out.push(Step::Dirs);
                    (Step::InDirs, 3)
                } else {
                    (Step::Any, 2)
                }
            }
            '*' => (Step::Star, 1),
            '?' => (Step::One, 1),
            // A class without its closing `]` is a plain `[`.
            '[' => match class(&p[i + 1..], 'a') {
                Some((_, n)) => (Step::Class(i + 1), 1 + n),
                None => (Step::Char('['), 1),
            },
            '\\' if i + 1 < p.len() => (Step::Char(p[i + 1]), 2),
            c => (Step::Char(c), 1),
        };
        out.push(step);
        i += used;
    }
    out
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
        assert!(glob("[ab", "[ab"));
        assert!(glob("**/", "a/b/"));
        assert!(!glob("a*", "a/b"));
    }

    #[test]
    fn hostile_globs() {
        // One stack frame per character (the old matcher) overflowed on these; a star per
        // character made it backtrack without end.
        let long = "a".repeat(300_000);
        assert!(glob(&long, &long));
        assert!(!glob(&format!("{long}b"), &long));
        let stars = "*a".repeat(2_000) + "b";
        assert!(!glob(&stars, &"a".repeat(5_000)));
        assert!(glob(&"**/".repeat(1_000), &"d/".repeat(1_000)));
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
