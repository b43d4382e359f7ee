//! Which of the three source forms a function is (see the crate docs),
//! read off its code tokens, and the byte that names it in a script.

#[derive(Debug, PartialEq)]
pub(crate) enum Form {
    Module,
    Script,
    Body,
}

impl Form {
    pub(crate) fn byte(&self) -> u8 {
        match self {
            Self::Module => b'M',
            Self::Script => b'S',
            Self::Body => b'B',
        }
    }

    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            b'M' => Some(Self::Module),
            b'S' => Some(Self::Script),
            b'B' => Some(Self::Body),
            _ => None,
        }
    }
}

/// Decide the source form from its code tokens (comments and string
/// contents blanked out first).
pub(crate) fn form(source: &str) -> Form {
    let code = blank_comments_and_strings(source);
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$' || c == '='))
        .filter(|w| !w.is_empty())
        .collect();
    if words.contains(&"export") {
        return Form::Module;
    }
    let declares_handler = words.windows(2).any(|pair| {
        matches!(pair, ["function" | "const" | "let" | "var", "handler"])
            || (pair[0] == "handler" && pair[1].starts_with('=') && !pair[1].starts_with("=="))
    }) || words
        .iter()
        .any(|w| w.starts_with("handler=") && !w.starts_with("handler=="));
    if declares_handler {
        Form::Script
    } else {
        Form::Body
    }
}

fn blank_comments_and_strings(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
            out.push(' ');
        } else if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}
