//! Source files, spans and diagnostics, and their rendering through miette.
//!
//! Every error the front end reports is a [`Diagnostic`]: a message, an optional span into a
//! file of the [`SourceMap`], a label and a hint. [`CompileError`] bundles all diagnostics of
//! one compilation with the sources they point into, and renders them as text with the file,
//! line, column and a caret line under the span.

use std::fmt;

/// Index of a file in a [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FileId(pub u32);

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub file: FileId,
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span { file, start, end }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span { file: self.file, start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

/// One source file: the name it is shown under and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// All files of one compilation.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.push(SourceFile { name: name.into(), text: text.into() });
        FileId(self.files.len() as u32 - 1)
    }

    /// Every file, in the order they were read.
    pub fn files(&self) -> impl Iterator<Item = &SourceFile> {
        self.files.iter()
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, id: FileId, offset: usize) -> (usize, usize) {
        let text = &self.get(id).text;
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

/// One problem found in a spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub message: String,
    pub span: Option<Span>,
    pub label: String,
    pub help: Option<String>,
    /// Further places, each with a label (shown when in the same file as `span`).
    pub notes: Vec<(Span, String)>,
    /// Something the user may set from outside the spec to fix it; the library names it,
    /// each way in (CLI flags, macro arguments) spells it in its own terms
    /// ([`CompileError::with_hints`]).
    pub suggestion: Option<Suggestion>,
}

/// A setting from outside the spec that can fix a diagnostic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Suggestion {
    /// Give network parameter `name` a value.
    SetParameter { name: String },
    /// Give the network another input shape.
    InputShape,
}

impl Diagnostic {
    /// An error pointing at `span`.
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { message: message.into(), span: Some(span), label: "here".into(), help: None, notes: vec![], suggestion: None }
    }

    /// An error that is not about a place in a file (a value set for a parameter the
    /// network does not have, say).
    pub fn global(message: impl Into<String>) -> Diagnostic {
        Diagnostic { message: message.into(), span: None, label: String::new(), help: None, notes: vec![], suggestion: None }
    }

    pub fn label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    /// Adds a labelled secondary place.
    pub fn note(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.notes.push((span, label.into()));
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Notes a setting from outside the spec that can fix this.
    pub fn suggest(mut self, suggestion: Suggestion) -> Diagnostic {
        self.suggestion = Some(suggestion);
        self
    }
}

/// Every diagnostic of a failed compilation, with the sources they point into.
#[derive(Debug, Clone)]
pub struct CompileError {
    pub diagnostics: Vec<Diagnostic>,
    pub sources: SourceMap,
}

impl CompileError {
    /// Appends to each diagnostic's help how to apply its [`Suggestion`] in the caller's
    /// terms (`--set NAME=VALUE` for the CLI, `set(NAME = VALUE)` for the macro).
    pub fn with_hints(mut self, hint: impl Fn(&Suggestion) -> String) -> CompileError {
        for d in &mut self.diagnostics {
            if let Some(s) = d.suggestion.take() {
                let h = hint(&s);
                d.help = Some(match d.help.take() {
                    Some(help) => format!("{help} ({h})"),
                    None => h,
                });
            }
        }
        self
    }

    /// Whether `d` points into a line too long to draw.
    fn long_line(&self, d: &Diagnostic) -> bool {
        const MAX_DRAWN_LINE: usize = 2000;
        d.span.iter().chain(d.notes.iter().map(|(s, _)| s)).any(|span| {
            let Some(file) = self.sources.files().nth(span.file.0 as usize) else { return false };
            let text = &file.text;
            let at = span.start.min(text.len());
            let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            end - start > MAX_DRAWN_LINE || span.end.saturating_sub(span.start) > MAX_DRAWN_LINE
        })
    }

    /// `error: message`, `--> file:line:col`, the label and the help, without the source.
    fn render_plain(&self, d: &Diagnostic) -> String {
        let mut out = format!("error: {}\n", d.message);
        if let Some(span) = d.span {
            if let Some(file) = self.sources.files().nth(span.file.0 as usize) {
                let (line, col) = self.sources.line_col(span.file, span.start);
                out.push_str(&format!("  --> {}:{line}:{col}: {}\n", file.name, d.label));
            }
        }
        if let Some(h) = &d.help {
            out.push_str(&format!("  help: {h}\n"));
        }
        out
    }

    /// Renders all diagnostics as plain text (ASCII art, no colour): the form used by
    /// snapshots, `compile_error!` and non-terminal output.
    pub fn render(&self) -> String {
        self.render_with(false)
    }

    /// Renders all diagnostics, with ANSI colours when `color` is set.
    pub fn render_with(&self, color: bool) -> String {
        let theme = if color {
            miette::GraphicalTheme { characters: miette::ThemeCharacters::ascii(), styles: miette::ThemeStyles::ansi() }
        } else {
            miette::GraphicalTheme { characters: miette::ThemeCharacters::ascii(), styles: miette::ThemeStyles::none() }
        };
        let handler = miette::GraphicalReportHandler::new_themed(theme).with_width(100).with_context_lines(1);
        let mut out = String::new();
        for d in &self.diagnostics {
            // miette draws the whole source line and panics on columns past 65535: very long
            // lines get a plain rendering with the place as file:line:col.
            if self.long_line(d) {
                out.push_str(&self.render_plain(d));
                out.push('\n');
                continue;
            }
            let report = Rendered::new(d, &self.sources);
            if handler.render_report(&mut out, &report).is_err() {
                out.push_str(&format!("error: {}\n", d.message));
            }
            out.push('\n');
        }
        let n = self.diagnostics.len();
        out.push_str(&format!("{n} error{}\n", if n == 1 { "" } else { "s" }));
        out
    }

    /// The first diagnostic as `file:line:col: message` (used in short contexts).
    pub fn headline(&self) -> String {
        match self.diagnostics.first() {
            Some(d) => match d.span {
                Some(s) => {
                    let (l, c) = self.sources.line_col(s.file, s.start);
                    format!("{}:{l}:{c}: {}", self.sources.get(s.file).name, d.message)
                }
                None => d.message.clone(),
            },
            None => "unknown error".into(),
        }
    }
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for CompileError {}

/// A diagnostic in the form miette renders.
#[derive(Debug)]
struct Rendered {
    message: String,
    source: Option<miette::NamedSource<String>>,
    labels: Vec<miette::LabeledSpan>,
    help: Option<String>,
}

impl Rendered {
    fn new(d: &Diagnostic, sources: &SourceMap) -> Rendered {
        let (source, labels) = match d.span {
            Some(span) => {
                let file = sources.get(span.file);
                let len = span.end.saturating_sub(span.start).max(usize::from(span.start < file.text.len()));
                let mut labels =
                    vec![miette::LabeledSpan::new_primary_with_span(Some(d.label.clone()), (span.start.min(file.text.len()), len))];
                for (s, l) in d.notes.iter().filter(|(s, _)| s.file == span.file) {
                    labels.push(miette::LabeledSpan::new(Some(l.clone()), s.start.min(file.text.len()), s.end.saturating_sub(s.start)));
                }
                (Some(miette::NamedSource::new(file.name.clone(), file.text.clone())), labels)
            }
            None => (None, vec![]),
        };
        Rendered { message: d.message.clone(), source, labels, help: d.help.clone() }
    }
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rendered {}

impl miette::Diagnostic for Rendered {
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
}

/// The closest candidate to `word` by edit distance, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(word, c);
        if d <= (word.len().max(c.len()) / 3).max(1) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let mut sm = SourceMap::default();
        let f = sm.add("a", "ab\ncd");
        assert_eq!(sm.line_col(f, 0), (1, 1));
        assert_eq!(sm.line_col(f, 4), (2, 2));
    }

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(did_you_mean("convv", ["conv", "bn"]), Some("conv"));
        assert_eq!(did_you_mean("xyz", ["conv", "bn"]), None);
    }
}
