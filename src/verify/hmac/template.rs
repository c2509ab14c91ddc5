//! The signed-payload template of the [`Hmac`](super::Hmac) verifier:
//! literal text with `{body}`, `{id}`, `{timestamp}` and `{header:Name}`
//! placeholders (`{{` and `}}` for literal braces).

use std::fmt;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    /// Bytes signed as they are.
    Literal(Vec<u8>),
    /// The raw request body.
    Body,
    /// The value of the id header.
    Id,
    /// The value of the timestamp header, as sent.
    Timestamp,
    /// The single value of this header.
    Header(&'static str),
}

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// A `{` without its `}`, or a `}` that is not `}}`.
    #[error("unbalanced brace at byte {0} (write `{{{{` or `}}}}` for a literal brace)")]
    Unbalanced(usize),
    /// A placeholder the template language does not have.
    #[error("unknown placeholder `{{{0}}}`: use `{{body}}`, `{{id}}`, `{{timestamp}}` or `{{header:Name}}`")]
    UnknownPlaceholder(String),
    /// The template never signs the body.
    #[error("the template must sign the body: it has no `{{body}}`")]
    NoBody,
    /// `{id}` without an id header, or `{timestamp}` without a timestamp
    /// header.
    #[error("the template uses `{{{0}}}` but no {0} header is set")]
    NoHeaderFor(&'static str),
}

/// A parsed template.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Template {
    pub(super) pieces: Vec<Piece>,
    source: String,
}

impl Template {
    /// Parses `source`; header names are leaked once, so that errors can
    /// name them (`&'static str`, like every built-in header name).
    pub(super) fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let bytes = source.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'{' if bytes.get(i + 1) == Some(&b'{') => {
                    literal.push(b'{');
                    i += 2;
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    literal.push(b'}');
                    i += 2;
                }
                b'}' => return Err(TemplateError::Unbalanced(i)),
                b'{' => {
                    let end = source[i + 1..]
                        .find(['}', '{'])
                        .map(|at| at + i + 1)
                        .filter(|&at| bytes[at] == b'}')
                        .ok_or(TemplateError::Unbalanced(i))?;
                    let name = &source[i + 1..end];
                    let piece = match name {
                        "body" => Piece::Body,
                        "id" => Piece::Id,
                        "timestamp" => Piece::Timestamp,
                        _ => match name.strip_prefix("header:") {
                            Some(header) if !header.trim().is_empty() => {
                                Piece::Header(Box::leak(header.trim().into()))
                            }
                            _ => return Err(TemplateError::UnknownPlaceholder(name.to_owned())),
                        },
                    };
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(piece);
                    i = end + 1;
                }
                byte => {
                    literal.push(byte);
                    i += 1;
                }
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        if !pieces.contains(&Piece::Body) {
            return Err(TemplateError::NoBody);
        }
        Ok(Self {
            pieces,
            source: source.to_owned(),
        })
    }

    /// Whether it uses this piece.
    pub(super) fn uses(&self, piece: &Piece) -> bool {
        self.pieces.contains(piece)
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.source, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_literals_and_escapes() {
        let t = Template::parse("v0:{timestamp}:{body}").unwrap();
        assert_eq!(
            t.pieces,
            vec![
                Piece::Literal(b"v0:".to_vec()),
                Piece::Timestamp,
                Piece::Literal(b":".to_vec()),
                Piece::Body
            ]
        );
        let t = Template::parse("{{{id}}}.{header: X-Shop }{body}").unwrap();
        assert_eq!(
            t.pieces,
            vec![
                Piece::Literal(b"{".to_vec()),
                Piece::Id,
                Piece::Literal(b"}.".to_vec()),
                Piece::Header("X-Shop"),
                Piece::Body
            ]
        );
        assert_eq!(Template::parse("{body}").unwrap().pieces, vec![Piece::Body]);
    }

    #[test]
    fn malformed_templates_are_refused() {
        assert_eq!(Template::parse("{body"), Err(TemplateError::Unbalanced(0)));
        assert_eq!(
            Template::parse("x}{body}"),
            Err(TemplateError::Unbalanced(1))
        );
        assert_eq!(
            Template::parse("{bo{dy}"),
            Err(TemplateError::Unbalanced(0))
        );
        assert_eq!(
            Template::parse("{nonce}{body}"),
            Err(TemplateError::UnknownPlaceholder("nonce".into()))
        );
        assert_eq!(
            Template::parse("{header:}{body}"),
            Err(TemplateError::UnknownPlaceholder("header:".into()))
        );
        assert_eq!(
            Template::parse("{id}.{timestamp}"),
            Err(TemplateError::NoBody)
        );
        assert_eq!(Template::parse(""), Err(TemplateError::NoBody));
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(source in "\\PC{0,40}") {
            if let Ok(template) = Template::parse(&source) {
                proptest::prop_assert!(template.uses(&Piece::Body));
            }
        }
    }
}
