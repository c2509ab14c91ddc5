//! The job key: one best-effort job's name, stable across every retry.

/// The key of the job of `handler` for the event `id` of `provider`:
/// `{provider}:{id}:{handler}`, each part escaped (see [`JobMessage::key`]).
///
/// [`JobMessage::key`]: super::JobMessage::key
pub(crate) fn job_key(provider: &str, id: &str, handler: &str) -> String {
    let mut key = String::with_capacity(provider.len() + id.len() + handler.len() + 2);
    escape_into(&mut key, provider);
    key.push(':');
    escape_into(&mut key, id);
    key.push(':');
    escape_into(&mut key, handler);
    key
}

/// Appends `part`, with `%`, `:` and every byte outside printable ASCII
/// written as `%XX`, so the three parts stay apart and the key is a valid
/// header value (NATS `Nats-Msg-Id`, an AMQP `message_id`).
fn escape_into(key: &mut String, part: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in part.as_bytes() {
        if byte.is_ascii_graphic() && byte != b'%' && byte != b':' {
            key.push(char::from(byte));
        } else {
            key.push('%');
            key.push(char::from(HEX[usize::from(byte >> 4)]));
            key.push(char::from(HEX[usize::from(byte & 0xF)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::job_key;

    #[test]
    fn plain_parts_read_as_they_are() {
        assert_eq!(
            job_key("stripe", "evt_1", "email_receipt"),
            "stripe:evt_1:email_receipt"
        );
    }

    #[test]
    fn separators_and_unprintable_bytes_are_escaped_so_parts_never_run_together() {
        assert_eq!(job_key("a", "b:c", "d"), "a:b%3Ac:d");
        assert_ne!(job_key("a", "b:c", "d"), job_key("a", "b", "c:d"));
        assert_eq!(job_key("a", "100%", "x y"), "a:100%25:x%20y");
        assert_eq!(job_key("a", "é\r\n", "h"), "a:%C3%A9%0D%0A:h");
    }
}
