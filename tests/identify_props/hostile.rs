//! The generator of hostile JSON documents for `identify_props`.
//!
//! Proptest draws a list of numbers; `Gen` turns it into a document, each number
//! one decision (which alternative, how many members, which byte). An exhausted
//! list reads as zeros, and every decision lists its plainest valid alternative
//! first, so shrinking the list shrinks the document towards simple valid JSON.
//! Building from plain code keeps the 100,000 cases fast in a debug build.
//!
//! Every building block is usually valid and sometimes hostile, at rates chosen so
//! that about half the documents are valid JSON and most objects carry `id` and
//! `type`: both verdicts and the extracted values get exercised.

/// Turns proptest's numbers into decisions.
pub struct Gen {
    choices: Vec<u32>,
    at: usize,
}

impl Gen {
    /// A generator reading these decisions.
    pub fn new(choices: Vec<u32>) -> Self {
        Self { choices, at: 0 }
    }

    fn next(&mut self) -> u32 {
        let value = self.choices.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        value
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        self.next() as usize % n
    }

    /// `true` with probability `per_mille` / 1000 (never on an exhausted list).
    fn chance(&mut self, per_mille: u32) -> bool {
        self.next() % 1000 >= 1000 - per_mille
    }

    /// The index of the alternative drawn with these weights.
    fn weighted(&mut self, weights: &[u32]) -> usize {
        let mut x = self.next() % weights.iter().sum::<u32>();
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        unreachable!("x is below the sum of the weights")
    }

    /// One of the `|`-separated items of `list`.
    pub fn pick(&mut self, list: &'static [u8]) -> &'static [u8] {
        let items = list.split(|&b| b == b'|');
        let at = self.below(items.clone().count());
        items.clone().nth(at).unwrap_or_default()
    }
}

/// Nesting far past serde_json's limit of 128, as in the issue.
pub const VERY_DEEP: usize = 100_000;

/// Container nesting of the generated values (before any deliberate deep wrap).
const MAX_VALUE_DEPTH: usize = 4;

const VALID_ESCAPES: &[u8] = b"\\n|\\\"|\\\\|\\/|\\b|\\f|\\r|\\t|\\ud83d\\ude00|\\uDBFF\\uDFFF|\\u0000|\\u001f|\\u0022|\\u00e9|\\uFFFF";
const BAD_ESCAPES: &[u8] =
    b"\\x|\\u12|\\u12g4|\\U0041|\\'|\\0|\\ud800\\n|\\ud800\\|\\ud800\\u|\\ud800x|\\|\\u";
/// Not UTF-8 (overlong forms, encoded surrogates, past U+10FFFF, cut sequences,
/// stray continuation bytes), or refused raw in a JSON string.
const BAD_STRING_BYTES: &[u8] = b"\xff|\x80|\xbf|\xc0\xaf|\xc1\xbf|\xe0\x80\xaf|\xe0\x9f\xbf|\xed\xa0\x80|\xed\xbf\xbf|\xf0\x8f\xbf\xbf|\xf4\x90\x80\x80|\xf5\x80\x80\x80|\xf8\x88\x80\x80\x80|\xfe|\xc3|\xe2\x82|\xf0\x9f\x98|\xc3\x28|\xe2\x28\xa1|\x00|\x1f|\n|\t";
const GOOD_NON_ASCII: &[u8] = b"\x7f|\xc3\xa9|\xe2\x82\xac|\xf0\x9f\x98\x80|\xef\xbf\xbf|\xf4\x8f\xbf\xbf|\xed\x9f\xbf|\xee\x80\x80|\xc2\x80|\xf0\x90\x80\x80";
const PLAIN: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._:/-";

fn unicode_escape(out: &mut Vec<u8>, unit: u32, upper: bool) {
    let unit = unit & 0xFFFF;
    out.extend(
        if upper {
            format!("\\u{unit:04X}")
        } else {
            format!("\\u{unit:04x}")
        }
        .bytes(),
    );
}

fn escape(g: &mut Gen, out: &mut Vec<u8>) {
    let upper = g.chance(500);
    match g.weighted(&[8, 4, 4, 1, 1, 1, 1]) {
        0 => out.extend_from_slice(g.pick(VALID_ESCAPES)),
        1 => {
            // Any code unit outside the surrogates.
            let unit = g.next() % (0x1_0000 - 0x800);
            let unit = if unit >= 0xD800 { unit + 0x800 } else { unit };
            unicode_escape(out, unit, upper);
        }
        2 => {
            unicode_escape(out, 0xD800 + g.next() % 0x400, upper);
            unicode_escape(out, 0xDC00 + g.next() % 0x400, !upper);
        }
        // Hostile: lone or mispaired surrogates, unknown or cut escapes.
        3 => unicode_escape(out, 0xD800 + g.next() % 0x400, upper),
        4 => unicode_escape(out, 0xDC00 + g.next() % 0x400, upper),
        5 => {
            unicode_escape(out, 0xD800 + g.next() % 0x400, upper);
            unicode_escape(out, g.next(), upper);
        }
        _ => out.extend_from_slice(g.pick(BAD_ESCAPES)),
    }
}

fn string(g: &mut Gen, out: &mut Vec<u8>) {
    out.push(b'"');
    for _ in 0..g.below(5) {
        match g.weighted(&[20, 6, 6, 1, 1]) {
            0 => {
                for _ in 0..g.below(13) {
                    out.push(PLAIN[g.below(PLAIN.len())]);
                }
            }
            1 => out.extend_from_slice(g.pick(GOOD_NON_ASCII)),
            2 => escape(g, out),
            3 => out.extend_from_slice(g.pick(BAD_STRING_BYTES)),
            _ => {
                // A long plain run, so the scan's wide steps are exercised too.
                for _ in 0..40 + g.below(90) {
                    out.push(b'a' + g.below(26) as u8);
                }
            }
        }
    }
    if !g.chance(5) {
        out.push(b'"');
    }
}

fn digits(g: &mut Gen, out: &mut Vec<u8>, count: usize) {
    for _ in 0..count {
        out.push(b'0' + g.below(10) as u8);
    }
}

const EDGE_NUMBERS: &[u8] = b"1e400|-1e400|1E400|1e+400|1e-400|1e308|1e309|-1e309|1.7976931348623157e308|1.7976931348623158e308|1.7976931348623159e308|1.8e308|17976931348623157e292|17976931348623159e292|0e999999999999|0.0e99999999999999999999|1e2147483647|1e2147483648|1e-2147483649|1e99999999999999999999|-0|-0.0|18446744073709551615|18446744073709551616|-9223372036854775808|-9223372036854775809|123456789012345678901234567890|0.1e-330|100e306|1000e306";
const BAD_NUMBERS: &[u8] =
    b"01|-01|00|-|1.|-1.|.5|1e|1E+|1e-|+1|1.e5|--1|0x1F|1_000|-.5|1ee5|1.5.5|- 1";

fn number(g: &mut Gen, out: &mut Vec<u8>) {
    match g.weighted(&[6, 3, 2, 4, 2, 1, 1, 2, 1]) {
        0 => out.extend((g.next() as i32).to_string().bytes()),
        1 => {
            let wide = (u64::from(g.next()) << 32) | u64::from(g.next());
            out.extend(wide.to_string().bytes());
        }
        2 => {
            let f = f64::from_bits((u64::from(g.next()) << 32) | u64::from(g.next()));
            if f.is_finite() {
                out.extend(format!("{f:e}").bytes());
            } else {
                out.push(b'7');
            }
        }
        3 => {
            // JSON's grammar, all parts random.
            if g.chance(300) {
                out.push(b'-');
            }
            if g.chance(200) {
                out.push(b'0');
            } else {
                out.push(b'1' + g.below(9) as u8);
                let count = g.below(23);
                digits(g, out, count);
            }
            if g.chance(400) {
                out.push(b'.');
                let count = 1 + g.below(22);
                digits(g, out, count);
            }
            if g.chance(400) {
                out.push(if g.chance(500) { b'e' } else { b'E' });
                match g.below(3) {
                    0 => {}
                    1 => out.push(b'+'),
                    _ => out.push(b'-'),
                }
                let count = 1 + g.below(3);
                digits(g, out, count);
            }
        }
        4 => {
            // Near and past the edge of f64, where serde_json's own rounding decides.
            out.push(b'1' + g.below(9) as u8);
            if g.chance(500) {
                out.push(b'.');
                let count = 1 + g.below(17);
                digits(g, out, count);
            }
            out.extend(format!("e{}", 290 + g.below(30)).bytes());
        }
        5 => {
            out.push(b'1' + g.below(9) as u8);
            let count = 295 + g.below(25);
            digits(g, out, count);
        }
        6 => {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat_n(b'0', 300 + g.below(40)));
            out.push(b'1' + g.below(9) as u8);
            if g.chance(500) {
                out.extend(format!("e{}", g.below(700)).bytes());
            }
        }
        7 => out.extend_from_slice(g.pick(EDGE_NUMBERS)),
        // Hostile: outside JSON's number grammar.
        _ => out.extend_from_slice(g.pick(BAD_NUMBERS)),
    }
}

fn literal(g: &mut Gen, out: &mut Vec<u8>) {
    if g.chance(15) {
        out.extend_from_slice(
            g.pick(b"tru|nul|fals|nulll|True|NaN|Infinity|-Infinity|undefined|t"),
        );
    } else {
        out.extend_from_slice(g.pick(b"true|false|null"));
    }
}

/// White space: mostly none or JSON's four characters, rarely characters JSON
/// refuses.
fn ws(g: &mut Gen, out: &mut Vec<u8>) {
    match g.weighted(&[120, 40, 1]) {
        0 => {}
        1 => out.extend_from_slice(g.pick(b" |\n|\t|\r|\r\n  |  \n\t ")),
        _ => out.extend_from_slice(g.pick(b"\x0c|\x0b|\xc2\xa0|\x00|\xef\xbb\xbf")),
    }
}

/// A separator between members: a comma, rarely missing, doubled or wrong.
fn comma(g: &mut Gen, out: &mut Vec<u8>) {
    if g.chance(7) {
        out.extend_from_slice(g.pick(b"|,,|;|:"));
    } else {
        out.push(b',');
    }
}

/// Keys: the ones identify reads (also escaped), others, and arbitrary strings.
fn key(g: &mut Gen, out: &mut Vec<u8>) {
    match g.weighted(&[12, 4, 1]) {
        0 => out.extend_from_slice(g.pick(b"\"id\"|\"type\"|\"object\"|\"created\"|\"action\"|\"i\\u0064\"|\"typ\\u0065\"|\"\\u0061ction\"|\"data\"|\"x\"|\"\"|\"ID\"|\"id \"")),
        1 => string(g, out),
        _ => {
            if g.chance(500) {
                number(g, out)
            } else {
                literal(g, out)
            }
        }
    }
}

/// Values the known keys usually hold: mostly usable strings, else anything.
fn field_value(g: &mut Gen, out: &mut Vec<u8>) {
    if g.chance(500) {
        out.extend_from_slice(g.pick(b"\"evt_1\"|\"invoice.paid\"|\"opened\"|\"evt_\\u0031\"|\"a\\nb\"|\"evt_2\"|\"checkout.session.completed\"|\"closed\"|\"caf\xc3\xa9\"|\"\\ud83d\\ude00\""));
    } else if g.chance(250) {
        string(g, out);
    } else {
        out.extend_from_slice(g.pick(b"\"evt_1\"|\"invoice.paid\"|\"opened\"|\"\"|\"event\"|\"v2.core.event\"|1700000000|-1|9223372036854775807|9223372036854775808|1.5|null|[]|{}|\"evt_\\u0031\"|\"a\\nb\"|253402300800|-377705116801|\"evt_2\"|\"checkout.session.completed\"|\"closed\""));
    }
}

/// `open`, the members separated by commas (rarely a trailing one), `close`.
fn container(g: &mut Gen, out: &mut Vec<u8>, open: u8, members: Vec<Vec<u8>>, close: u8) {
    out.push(open);
    for (i, member) in members.into_iter().enumerate() {
        if i > 0 {
            comma(g, out);
        }
        out.extend(member);
    }
    if g.chance(10) {
        out.push(b',');
    }
    out.push(close);
}

/// `key : value`, with white space around every token.
fn member(
    g: &mut Gen,
    key: impl FnOnce(&mut Gen, &mut Vec<u8>),
    value: impl FnOnce(&mut Gen, &mut Vec<u8>),
) -> Vec<u8> {
    let mut out = Vec::new();
    ws(g, &mut out);
    key(g, &mut out);
    ws(g, &mut out);
    if !g.chance(5) {
        out.push(b':');
    }
    ws(g, &mut out);
    value(g, &mut out);
    ws(g, &mut out);
    out
}

fn value(g: &mut Gen, out: &mut Vec<u8>, depth: usize) {
    let container_weight = if depth == 0 { 0 } else { 2 };
    match g.weighted(&[4, 3, 1, container_weight, container_weight]) {
        0 => string(g, out),
        1 => number(g, out),
        2 => literal(g, out),
        3 => {
            let items = (0..g.below(5))
                .map(|_| {
                    let mut item = Vec::new();
                    ws(g, &mut item);
                    value(g, &mut item, depth - 1);
                    ws(g, &mut item);
                    item
                })
                .collect();
            container(g, out, b'[', items, b']');
        }
        _ => {
            let members = (0..g.below(5))
                .map(|_| member(g, key, |g, out| value(g, out, depth - 1)))
                .collect();
            container(g, out, b'{', members, b'}');
        }
    }
}

/// A value, mostly as is, sometimes wrapped right at serde_json's nesting limit,
/// rarely far past it.
fn nested_value(g: &mut Gen, out: &mut Vec<u8>) {
    let depth = match g.weighted(&[40, 8, 8, 1]) {
        0 => 0,
        1 => 1 + g.below(7),
        2 => 120 + g.below(13),
        _ => VERY_DEEP,
    };
    let (open, close): (&[u8], &[u8]) = match g.below(3) {
        0 => (b"[", b"]"),
        1 => (b"{\"a\":", b"}"),
        _ => (b"[{\"id\":\"x\",\"a\":", b"}]"),
    };
    out.extend(open.repeat(depth));
    value(g, out, MAX_VALUE_DEPTH);
    out.extend(close.repeat(depth));
}

/// A top-level document: usually an object holding `id` and `type` among other
/// members (the skipped ones hostile at times), otherwise any value; then, rarely,
/// trailing garbage or one random byte edit.
pub fn document(g: &mut Gen) -> Vec<u8> {
    let mut out = Vec::new();
    ws(g, &mut out);
    if g.chance(200) {
        nested_value(g, &mut out);
    } else {
        let mut members = Vec::new();
        if !g.chance(150) {
            members.push(member(
                g,
                |_, out| out.extend_from_slice(b"\"id\""),
                field_value,
            ));
        }
        if !g.chance(150) {
            members.push(member(
                g,
                |_, out| out.extend_from_slice(b"\"type\""),
                field_value,
            ));
        }
        for _ in 0..g.below(5) {
            let other = if g.chance(600) {
                member(g, key, nested_value)
            } else {
                member(g, key, field_value)
            };
            members.push(other);
        }
        for i in (1..members.len()).rev() {
            members.swap(i, g.below(i + 1));
        }
        container(g, &mut out, b'{', members, b'}');
    }
    ws(g, &mut out);
    if g.chance(15) {
        out.extend_from_slice(g.pick(b"x|}|]|{}|,|\x00|\xff|0|\"|null"));
    }
    if !out.is_empty() && g.chance(120) {
        let at = g.below(out.len());
        match g.below(4) {
            0 => out[at] = g.next() as u8,
            1 => out.insert(at, g.next() as u8),
            2 => {
                out.remove(at);
            }
            _ => out.truncate(at),
        }
    }
    out
}
