//! The part of nats-server's configuration format the node configs use
//! (`deploy/nats-cluster/n*.conf`): `key: value` (or `=`, or a space), `key { ... }`
//! blocks, `[ ... ]` lists (comma- or line-separated), quoted or bare values, `#` and
//! `//` comments. Parsed into a tree the checks read, and written back out (with some
//! values changed) for the test that runs the nodes on loopback. `include` and
//! `$VARIABLES` are refused rather than misread.

/// A value: a string as written (bare or quoted), a list or a block.
#[derive(Debug, Clone, PartialEq)]
pub enum Conf {
    Str { text: String, quoted: bool },
    List(Vec<Conf>),
    Block(Vec<(String, Conf)>),
}

impl Conf {
    /// A bare value.
    pub fn bare(text: impl Into<String>) -> Self {
        Self::Str {
            text: text.into(),
            quoted: false,
        }
    }

    /// A quoted string.
    pub fn quoted(text: impl Into<String>) -> Self {
        Self::Str {
            text: text.into(),
            quoted: true,
        }
    }

    /// The value under `key` in a block (keys are case-insensitive, as nats-server
    /// reads them).
    pub fn get(&self, key: &str) -> Option<&Conf> {
        match self {
            Self::Block(entries) => entries
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Replaces (or adds) `key` in a block.
    pub fn set(&mut self, key: &str, value: Conf) {
        let Self::Block(entries) = self else {
            panic!("set {key} on a value that is no block")
        };
        match entries
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
        {
            Some(entry) => entry.1 = value,
            None => entries.push((key.to_owned(), value)),
        }
    }

    /// The block under `key`, to change in place.
    pub fn block_mut(&mut self, key: &str) -> Option<&mut Conf> {
        match self {
            Self::Block(entries) => entries
                .iter_mut()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The text of a string value.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Str { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The items of a list (a single value counts as a list of one).
    pub fn items(&self) -> Vec<&Conf> {
        match self {
            Self::List(items) => items.iter().collect(),
            other => vec![other],
        }
    }

    /// The configuration text of a top-level block.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Self::Block(entries) = self else {
            panic!("only a block renders as a configuration file")
        };
        render_entries(entries, 0, &mut out);
        out
    }
}

fn render_entries(entries: &[(String, Conf)], depth: usize, out: &mut String) {
    let indent = "  ".repeat(depth);
    for (key, value) in entries {
        match value {
            Conf::Block(inner) => {
                out.push_str(&format!("{indent}{key} {{\n"));
                render_entries(inner, depth + 1, out);
                out.push_str(&format!("{indent}}}\n"));
            }
            other => out.push_str(&format!("{indent}{key}: {}\n", render_value(other))),
        }
    }
}

fn render_value(value: &Conf) -> String {
    match value {
        Conf::Str { text, quoted: true } => format!("{text:?}"),
        Conf::Str { text, .. } => text.clone(),
        Conf::List(items) => {
            let items: Vec<String> = items.iter().map(render_value).collect();
            format!("[{}]", items.join(", "))
        }
        Conf::Block(_) => panic!("a block inside a list is not rendered"),
    }
}

/// Parses a configuration file's text into its top-level block.
pub fn parse(text: &str) -> Result<Conf, String> {
    let mut parser = Parser {
        chars: text.chars().collect(),
        at: 0,
    };
    let entries = parser.entries(None)?;
    Ok(Conf::Block(entries))
}

struct Parser {
    chars: Vec<char>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn line(&self) -> usize {
        self.chars[..self.at.min(self.chars.len())]
            .iter()
            .filter(|c| **c == '\n')
            .count()
            + 1
    }

    fn error(&self, what: impl std::fmt::Display) -> String {
        format!("line {}: {what}", self.line())
    }

    /// Skips spaces, separators and comments; `newlines` says whether line ends are
    /// skipped too.
    fn skip(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            if c == '#' || (c == '/' && self.chars.get(self.at + 1) == Some(&'/')) {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.at += 1;
                }
            } else if c == ' ' || c == '\t' || c == '\r' || (newlines && (c == '\n' || c == ';')) {
                self.at += 1;
            } else {
                break;
            }
        }
    }

    /// `key value` entries until `close` (or the end of the text).
    fn entries(&mut self, close: Option<char>) -> Result<Vec<(String, Conf)>, String> {
        let mut entries: Vec<(String, Conf)> = Vec::new();
        loop {
            self.skip(true);
            match self.peek() {
                None if close.is_none() => return Ok(entries),
                None => return Err(self.error(format!("missing {close:?}"))),
                Some(c) if Some(c) == close => {
                    self.at += 1;
                    return Ok(entries);
                }
                Some(_) => {}
            }
            let key = self.word(|c| c.is_alphanumeric() || "_-.".contains(c));
            if key.is_empty() {
                return Err(self.error(format!("expected a key, found {:?}", self.peek())));
            }
            if key.eq_ignore_ascii_case("include") {
                return Err(self.error("include is not read by the compose checks"));
            }
            self.skip(false);
            if matches!(self.peek(), Some(':' | '=')) {
                self.at += 1;
                self.skip(false);
            }
            let value = self.value()?;
            if entries.iter().any(|(k, _)| k.eq_ignore_ascii_case(&key)) {
                return Err(self.error(format!("{key} is set twice")));
            }
            entries.push((key, value));
        }
    }

    fn word(&mut self, accept: impl Fn(char) -> bool) -> String {
        let start = self.at;
        while self.peek().is_some_and(&accept) {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    fn value(&mut self) -> Result<Conf, String> {
        match self.peek() {
            Some('{') => {
                self.at += 1;
                Ok(Conf::Block(self.entries(Some('}'))?))
            }
            Some('[') => {
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    self.skip(true);
                    match self.peek() {
                        Some(']') => {
                            self.at += 1;
                            return Ok(Conf::List(items));
                        }
                        Some(',') => self.at += 1,
                        None => return Err(self.error("missing ]")),
                        Some(_) => items.push(self.value()?),
                    }
                }
            }
            Some(quote @ ('"' | '\'')) => {
                self.at += 1;
                let text = self.word(|c| c != quote && c != '\n');
                if self.peek() != Some(quote) {
                    return Err(self.error("unterminated string"));
                }
                self.at += 1;
                Ok(Conf::quoted(text))
            }
            Some(_) => {
                let text = self.word(|c| !c.is_whitespace() && !",;]}#".contains(c));
                if text.is_empty() {
                    return Err(self.error(format!("expected a value, found {:?}", self.peek())));
                }
                if text.starts_with('$') {
                    return Err(self.error(format!(
                        "{text}: variables are not read by the compose checks"
                    )));
                }
                Ok(Conf::bare(text))
            }
            None => Err(self.error("expected a value")),
        }
    }
}

/// A size as nats-server reads it: a bare number of bytes, or a number with a unit,
/// `K`, `M`, `G`, `T` counting in powers of 1000 and `KB`/`KiB`/`Ki` (and so on) in
/// powers of 1024, case-insensitive (nats-server 2.9: `10G` is 10,000,000,000 bytes,
/// `10GB` and `10GiB` are 10,737,418,240; the loopback test holds this to the server's
/// own reading).
pub fn size(text: &str) -> Option<u64> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let number: u64 = digits.parse().ok()?;
    let unit = text[digits.len()..].to_ascii_lowercase();
    let (prefix, binary) = match unit.as_str() {
        "" => return Some(number),
        u if u.len() == 1 => (u, false),
        u if u.ends_with("ib") && u.len() == 3 => (&u[..1], true),
        u if (u.ends_with('b') || u.ends_with('i')) && u.len() == 2 => (&u[..1], true),
        _ => return None,
    };
    let power = "kmgtpe".find(prefix)? as u32 + 1;
    let base: u64 = if binary { 1024 } else { 1000 };
    number.checked_mul(base.checked_pow(power)?)
}

/// `host:port` or a bare port, as in `listen:` and `http:`: the port.
pub fn port_of(text: &str) -> Option<u16> {
    text.rsplit(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_the_node_configs_use() {
        let conf = parse(
            "# comment\nserver_name: n1 // trailing\nlisten = 0.0.0.0:4222\nhttp 8222\n\
             cluster {\n  name: \"c\"\n  routes: [\n    nats-route://n2:6222\n    nats-route://n3:6222, nats://x:1\n  ]\n}\n\
             jetstream { store_dir: '/data'; max_file_store: 10GiB }\n",
        )
        .unwrap();
        assert_eq!(conf.get("server_name").unwrap().text(), Some("n1"));
        assert_eq!(conf.get("LISTEN").unwrap().text(), Some("0.0.0.0:4222"));
        assert_eq!(
            port_of(conf.get("http").unwrap().text().unwrap()),
            Some(8222)
        );
        let cluster = conf.get("cluster").unwrap();
        assert_eq!(cluster.get("name"), Some(&Conf::quoted("c")));
        let routes: Vec<_> = cluster.get("routes").unwrap().items();
        assert_eq!(routes.len(), 3);
        assert_eq!(routes[0].text(), Some("nats-route://n2:6222"));
        let js = conf.get("jetstream").unwrap();
        assert_eq!(js.get("store_dir").unwrap().text(), Some("/data"));
        // What it writes out reads back the same.
        assert_eq!(parse(&conf.render()).unwrap(), conf);
        for bad in [
            "a: [1, 2",
            "include other.conf",
            "a: $X",
            "a: 1\na: 2",
            "a { b: 1",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn sizes_count_as_nats_server_counts_them() {
        assert_eq!(size("1024"), Some(1024));
        assert_eq!(size("10G"), Some(10_000_000_000));
        assert_eq!(size("10g"), Some(10_000_000_000));
        assert_eq!(size("10GB"), Some(10 << 30));
        assert_eq!(size("10GiB"), Some(10 << 30));
        assert_eq!(size("10Gi"), Some(10 << 30));
        assert_eq!(size("256MiB"), Some(256 << 20));
        assert_eq!(size("1T"), Some(1_000_000_000_000));
        assert_eq!(size("10X"), None);
        assert_eq!(size("GB"), None);
    }
}
